"""What llmkit writes to disk and reads back: checkpoints, Hugging Face layouts, GGUF, tokenizer files.

One room below training and inference: `checkpoint` (llmkit checkpoints and the one weight loader),
`train_state` (resumable step checkpoints), `hf` (Hugging Face directories, dispatched by the models'
declared traits), `gguf` (llama.cpp files), `tokenizer_files` (the one `load_tokenizer`) and
`publish` (the one "stage a directory, then rename it into place" helper).
"""
