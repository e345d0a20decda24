"""Networks: the block-causal generator and its KV cache, the VAE, the attention kernel choice."""
