"""`lightcoder finetune`: adapt a released Llama-architecture code model to your own repositories.

config.py (FinetuneConfig), base.py (the base dir, its tokenizer and FIM format), data.py (curation +
file-level split), pack.py (windows in the base's format), lora.py (peft adapters with HF names),
lora_loop.py (LoRA / QLoRA training), evaluate.py (before / after), deploy.py (serve / export hooks),
report.py, command.py (the CLI), aixcoder_layout.py (a SentencePiece model in aiXcoder's layout).
"""
