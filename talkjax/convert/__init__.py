"""Weight import from public checkpoint files (safetensors first; .bin read without pickle)."""
