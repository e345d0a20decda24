"""Training: the AAPT stages (VAE, diffusion, consistency, adversarial, long video), one objective per module."""
