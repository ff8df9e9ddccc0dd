"""Data pipeline: sources -> cleaning -> dedup -> tokenized memmap shards -> batch loaders.

    slm prepare configs/synthetic.yaml          # or prepare(load_config(DataConfig, ...)) from Python
    from slmkit.data import TrainBatches, EvalBatches
"""
