"""Fine-tuning on the one Trainer: full, LoRA, QLoRA and chat SFT (assistant-only loss, packing).

The pieces, each in its own module: LoRA/DoRA wrappers of the projections (lora.py), adapters on disk and
their PEFT twin (adapter.py, peft_format.py), chat data rendered with an assistant-only mask
(chat_data.py, assistant_mask.py), packed batches (packing.py, sft_batches.py), and the run that ties them
to the Trainer (run.py).
"""
