"""LoRA trainers: cloud (Replicate, fal), local (peft, through Dagster Pipes), and pinning of existing LoRAs."""
