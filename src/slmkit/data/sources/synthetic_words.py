"""Word lists for the synthetic story generator: who, where, what, and how they feel.

Kept apart from the templates so the grammar in synthetic.py stays readable. Every entry is
chosen to fit the slots it is used in ("the {place}", "a {adjective} {object}").
"""

# (name, kind, pronoun) -- the kind is what the story calls them on first mention.
CHARACTERS = [
    ("Lily", "little girl", "she"), ("Tom", "little boy", "he"), ("Mia", "girl", "she"),
    ("Ben", "boy", "he"), ("Sue", "girl", "she"), ("Tim", "boy", "he"), ("Anna", "girl", "she"),
    ("Sam", "boy", "he"), ("Lucy", "girl", "she"), ("Jack", "boy", "he"), ("Emma", "girl", "she"),
    ("Leo", "boy", "he"), ("Zoe", "girl", "she"), ("Max", "dog", "he"), ("Bella", "cat", "she"),
    ("Pip", "bird", "he"), ("Daisy", "cow", "she"), ("Rosie", "bunny", "she"), ("Bob", "bear", "he"),
    ("Ollie", "owl", "he"), ("Kitty", "kitten", "she"), ("Spot", "puppy", "he"), ("Fluffy", "sheep", "she"),
    ("Freddy", "frog", "he"), ("Molly", "mouse", "she"), ("Duke", "duck", "he"), ("Nina", "girl", "she"),
    ("Jake", "boy", "he"), ("Ellie", "elephant", "she"), ("Toby", "turtle", "he"), ("Ruby", "fox", "she"),
]

# Grown-ups who help; each is "the {helper}" or "{his/her} {helper}".
HELPERS = ["mom", "dad", "grandma", "grandpa", "teacher", "big sister", "big brother", "aunt", "neighbor"]

# place -> things one does there (verb phrases after "liked to")
PLACES = {
    "park": ["play on the swings", "run on the grass", "slide down the big slide"],
    "garden": ["water the flowers", "look for bugs", "pick red berries"],
    "forest": ["walk under the tall trees", "look for pine cones", "listen to the birds"],
    "beach": ["build sand castles", "splash in the waves", "look for shells"],
    "farm": ["feed the hens", "ride on the hay cart", "pet the baby goats"],
    "lake": ["throw stones in the water", "watch the ducks", "sit on the old dock"],
    "backyard": ["dig in the dirt", "jump in the leaves", "chase butterflies"],
    "kitchen": ["help bake cookies", "stir the soup", "make lemonade"],
    "school": ["draw pictures", "sing songs", "read picture books"],
    "meadow": ["pick flowers", "roll down the hill", "watch the clouds"],
    "playground": ["climb the jungle gym", "play tag", "spin on the merry-go-round"],
    "hill": ["fly kites", "roll down the grass", "look at the town below"],
}

# (object, adjectives that fit it)
OBJECTS = [
    ("ball", ["red", "big", "bouncy", "blue", "shiny"]), ("kite", ["yellow", "colorful", "long", "new"]),
    ("teddy bear", ["soft", "brown", "old", "fluffy"]), ("toy car", ["red", "fast", "little", "shiny"]),
    ("hat", ["blue", "funny", "big", "warm"]), ("book", ["big", "old", "colorful", "new"]),
    ("doll", ["pretty", "small", "soft", "old"]), ("box", ["big", "brown", "heavy", "small"]),
    ("shell", ["pink", "pretty", "tiny", "shiny"]), ("balloon", ["red", "green", "big", "round"]),
    ("crayon", ["purple", "green", "little", "bright"]), ("boat", ["toy", "little", "blue", "wooden"]),
    ("scarf", ["warm", "long", "striped", "soft"]), ("drum", ["loud", "small", "red", "new"]),
    ("rock", ["smooth", "round", "sparkly", "gray"]), ("flower", ["pretty", "yellow", "pink", "tall"]),
    ("cookie", ["big", "sweet", "warm", "round"]), ("bucket", ["blue", "little", "plastic", "red"]),
    ("key", ["golden", "tiny", "old", "shiny"]), ("train", ["toy", "long", "wooden", "fast"]),
    ("puzzle", ["big", "hard", "colorful", "new"]), ("bike", ["red", "new", "small", "fast"]),
]

FEELINGS_GOOD = ["happy", "glad", "proud", "excited", "joyful", "thankful"]
FEELINGS_BAD = ["sad", "scared", "worried", "upset", "grumpy", "lonely"]

WEATHER = [
    "The sun was bright and warm.", "The sky was blue and clear.", "It was a cool and windy day.",
    "Soft white clouds moved across the sky.", "The air smelled like rain.", "It was a sunny morning.",
]

OPENINGS = [
    "Once upon a time, there was a {adj} {kind} named {name}.",
    "Once upon a time, in a small town, there lived a {kind} named {name}.",
    "One day, a {adj} {kind} named {name} woke up early.",
    "There was once a {kind} called {name}.",
    "{name} was a {adj} {kind} who lived near a {place}.",
    "Once there was a {kind} named {name}. {Pro} was very {adj}.",
    "In a little house by the {place}, there lived a {kind} named {name}.",
]

CHARACTER_ADJECTIVES = ["kind", "curious", "happy", "little", "brave", "friendly", "playful", "shy", "silly", "gentle"]

ENDINGS = [
    "They played together until the sun went down.",
    "That night, {name} went to sleep with a big smile.",
    "It was the best day ever.",
    "{Pro} hugged {helper_ref} and said, \"Thank you!\"",
    "Then they all went home to eat dinner.",
    "{name} laughed, and {friend} laughed too.",
    "{name} told {helper_ref} all about it at dinner.",
]

# Kinds a requested story (instruction data) may be about: (kind, pronouns it fits). Chosen so the
# kind's word appears in a story only where the story names its hero ("bird", "duck", "hen", "goat"
# are left out: the templates use them elsewhere; "owl", "elephant" too: the openings say "a {kind}").
REQUEST_KINDS = [
    ("girl", ("she",)), ("little girl", ("she",)), ("boy", ("he",)), ("little boy", ("he",)),
    ("cat", ("he", "she")), ("dog", ("he", "she")), ("cow", ("he", "she")), ("bunny", ("he", "she")),
    ("kitten", ("he", "she")), ("puppy", ("he", "she")), ("sheep", ("he", "she")), ("frog", ("he", "she")),
    ("mouse", ("he", "she")), ("turtle", ("he", "she")), ("fox", ("he", "she")), ("pig", ("he", "she")),
    ("lion", ("he", "she")), ("horse", ("he", "she")), ("monkey", ("he", "she")), ("tiger", ("he", "she")),
    ("pony", ("he", "she")), ("bear", ("he", "she")),
]
