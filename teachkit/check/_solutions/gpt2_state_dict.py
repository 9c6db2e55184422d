def gpt2_state_dict(toy_state, n_layer):
    """The toy GPT's tensors under Hugging Face GPT-2 names.

    GPT-2 stores its Linear layers as Conv1D, with weights (in, out) where nn.Linear keeps
    (out, in): those four weights per block are transposed; embeddings, LayerNorms and
    biases keep their shape.
    """
    out = {"transformer.wte.weight": toy_state["tok_emb.weight"],
           "transformer.wpe.weight": toy_state["pos_emb.weight"]}
    for i in range(n_layer):
        toy, hf = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[hf + b + ".weight"] = toy_state[toy + a + ".weight"]
            out[hf + b + ".bias"] = toy_state[toy + a + ".bias"]
        for a, b in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                     ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            out[hf + b + ".weight"] = toy_state[toy + a + ".weight"].t()
            out[hf + b + ".bias"] = toy_state[toy + a + ".bias"]
    out["transformer.ln_f.weight"] = toy_state["ln_f.weight"]
    out["transformer.ln_f.bias"] = toy_state["ln_f.bias"]
    return out
