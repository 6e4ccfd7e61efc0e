"""peft-bench: compare fine-tuning methods side by side with measurements."""
