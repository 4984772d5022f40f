"""spurbench: measure how much vision and vision-language models lean on spurious features."""
