"""Style LoRA training: cloud trainers live with their providers; the local GPU trainer is in `training.local`."""
