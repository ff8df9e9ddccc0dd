"""The judge prompts (TinyStories' GPT-Eval rubric, MT-Bench's single-v1 and pair-v2) and the bundled story
beginnings for the `stories-judge` suite.

TinyStories (arXiv 2305.07759): the judge is a teacher grading a student who completed a story beginning;
the beginning ends mid-sentence and `***` marks where the student's text starts, so the judge can check that
the split sentence is completed. Two turns: a general assessment, then the grades. The paper's grading
turn is `PAPER_STORY_GRADING_PROMPT`; `STORY_GRADING_PROMPT` adds one line asking for a fixed output format
(judges then answer in a form the parser reads far more often; the grades asked for are the same).

MT-Bench (lm-sys/FastChat fastchat/llm_judge/data/judge_prompts.jsonl): `single-v1` rates one answer 1-10 as
"[[rating]]"; `pair-v2` compares two answers and ends with "[[A]]", "[[B]]" or "[[C]]" (a tie). Texts verbatim.
"""

from __future__ import annotations

STORY_SEPARATOR = "***"

STORY_ASSESSMENT_PROMPT = (
    "In the following exercise, the student is given a beginning of a story. The student needs to complete it "
    "into a full story. The exercise tests the student's language abilities and creativity. The symbol *** marks "
    "the separator between the prescribed beginning and the student's completion:\n\n{story}\n\n"
    "Please provide your general assessment about the part written by the student (the one after the *** "
    "symbol). Is it gramatically correct? Is it consistent with the beginning of the story? Pay special "
    "attention to whether the student manages to complete the sentence which is split in the middle by the "
    "separator ***."
)

PAPER_STORY_GRADING_PROMPT = (
    "Now, grade the student's completion in terms of grammar, creativity, consistency with the story's beginning "
    "and whether the plot makes sense. Moreover, please provide your best guess of what the age of the student "
    "might be, as reflected from the completion. Choose from possible age groups: A: 3 or under. B: 4-5. "
    "C: 6-7. D: 8-9. E: 10-12. F: 13-16."
)

STORY_GRADING_PROMPT = PAPER_STORY_GRADING_PROMPT + (
    "\n\nGive each grade as a number from 0 to 10, in exactly this format:\n"
    "Grammar: X/10, Creativity: X/10, Consistency: X/10, Plot: X/10, Age group: X"
)

# Age groups the grading turn offers, by letter.
AGE_GROUPS = {"A": "3 or under", "B": "4-5", "C": "6-7", "D": "8-9", "E": "10-12", "F": "13-16"}

SINGLE_SYSTEM_PROMPT = "You are a helpful assistant."

SINGLE_PROMPT = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    "you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]"
)

PAIR_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any positional biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly following this format: "
    "\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie."
)

PAIR_PROMPT = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
    "[The End of Assistant B's Answer]"
)

# TinyStories-style beginnings written for slmkit (not the paper's set): simple words, one or two
# characters, and each stops in the middle of a sentence, which the student has to finish.
STORY_BEGINNINGS = [
    "Once upon a time, there was a little girl named Mia who loved to collect shiny stones. One day, she found a "
    "stone that was",
    "Tom had a red kite. Every morning he ran to the hill behind his house to fly it. But today the wind was so "
    "strong that",
    "In a small pond lived a frog called Ben. Ben wanted to jump higher than all the other frogs, so he",
    "Lily and her dad baked a big cake for Grandma. When they opened the oven, they saw that the cake",
    "A little dog named Max found a blue ball under the bench in the park. He picked it up and",
    "Sara was afraid of the dark. One night, the lights went out, and she heard a soft noise coming from",
    "There was once a tiny bird who could not sing. The other birds laughed at him, until one day",
    "Jack wanted to build the tallest tower of blocks in his class. He put one block on top of another, and",
    "On a sunny day, Anna and her brother went to the beach. They wanted to make a sandcastle, but the waves",
    "The old cat liked to sleep in the warm sun by the window. One afternoon, a little mouse came out and",
    "Ben got a new pair of boots for his birthday. He was so happy that he wanted to",
    "Emma saw a rainbow after the rain. She asked her mom where rainbows come from, and her mom said",
    "In the big forest there was a bear who loved honey more than anything. One morning, he smelled honey near",
    "Lucy lost her favorite doll at the market. She looked under every table and behind every box, but",
    "A boy named Sam planted a small seed in his garden. He gave it water every day, and after a week",
    "The little train puffed up the hill. It was carrying toys for the children in the town, but halfway up the",
    "Mom gave Tim a coin to buy some bread. On the way to the shop, Tim saw a sad old man who",
    "Zoe had a secret box under her bed. Nobody knew what was inside it, not even her best friend",
    "One cold winter night, a small fox knocked on the door of a little house. A kind woman opened the door and",
    "Leo and Mia wanted to play with the same red truck. Leo pulled it one way and Mia pulled it the other, "
    "until",
    "The sun was going down, and the farmer still could not find his cow. He called her name and",
    "Kate found a map in an old book. It had a big X drawn next to a tree, so she took a shovel and",
    "A little fish named Finn swam far away from his family. When he turned around, he could not",
    "Grandpa told Ella a story about a dragon who was scared of fire. Ella laughed and asked",
    "It was the first day of school, and Noah did not know anyone. He sat alone at lunch until a girl",
    "The wind blew the hat right off Mr. Brown's head. It flew over the fence and landed on",
    "Amy wanted to help her mom clean the house. She took the big broom, but it was so heavy that",
    "A happy duck walked to the pond with her five little ducklings. When she counted them, she saw that",
    "Peter liked to draw pictures of monsters. One night, one of his monsters jumped off the paper and",
    "The princess did not want to wear her crown. She wanted to climb trees and play in the mud, so one day",
    "Jake's balloon slipped out of his hand and floated up into the sky. He watched it go higher and higher, "
    "and then",
    "Rosa and her friend Maya found a little bird with a hurt wing in the yard. They made a bed for it in a",
    "Every night, the moon looked down at a boy who could not sleep. One night, the moon decided to",
    "The bunny wanted to share his carrots with his friends, but when he opened his basket, it was",
    "Ollie the owl wore big round glasses. He read books all night, and in the morning he told the animals",
    "Daisy was a cow who wanted to see the city. She walked out of the farm gate, and soon she",
    "The children made a snowman with a carrot nose and a warm scarf. The next morning, they ran outside and "
    "saw that the snowman",
    "Mark broke his mom's favorite cup by accident. He was scared, and he thought about hiding the pieces, but",
    "A little star fell from the sky and landed in a field. A girl named Nina picked it up, and it",
    "Two squirrels found one big nut. They both wanted it, so they decided to",
]
