"""Gumbel vector quantizer: shapes, temperature, straight-through gradient, HF parity."""

import hf_deps
import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.models.quantizer import GumbelVectorQuantizer, gumbel_temperature

G, V, DIM, C = 2, 8, 12, 6


def _init(batch=3, length=5, dtype=jnp.float32):
    module = GumbelVectorQuantizer(num_groups=G, num_vars=V, codevector_dim=DIM, dtype=dtype)
    x = jax.random.normal(jax.random.key(0), (batch, length, C))
    variables = jax.jit(module.init)(jax.random.key(1), x)
    return module, variables, x


def _logits(variables, x):
    proj = variables["params"]["weight_proj"]
    kernel = np.asarray(proj["kernel"].value)
    bias = np.asarray(proj["bias"].value)
    return np.asarray(x) @ kernel + bias  # [B, T, G*V]


def test_temperature_schedule_is_jittable_and_clamped():
    fn = jax.jit(lambda s: gumbel_temperature(s, 2.0, 0.5, 0.999995))
    np.testing.assert_allclose(fn(0), 2.0)
    np.testing.assert_allclose(fn(100_000), 2.0 * 0.999995**100_000, rtol=1e-5)
    np.testing.assert_allclose(fn(10_000_000), 0.5)


def test_params_shapes_and_logical_axes():
    _, variables, _ = _init()
    params = variables["params"]
    book = params["codevectors"]
    assert book.names == ("codes", None)
    assert book.value.shape == (G * V, DIM // G)
    assert 0.0 <= float(book.value.min()) and float(book.value.max()) < 1.0
    assert params["weight_proj"]["kernel"].names == ("embed", "codes")
    assert params["weight_proj"]["kernel"].value.shape == (C, G * V)


def test_eval_is_argmax_lookup_and_perplexity_matches_hand_computation():
    module, variables, x = _init()
    valid = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    out, perplexity, ids = jax.jit(module.apply)(variables, x, valid, 2.0)
    assert out.shape == (3, 5, DIM) and ids.shape == (3, 5, G) and ids.dtype == jnp.int32

    logits = _logits(variables, x).reshape(3, 5, G, V)
    want_ids = logits.argmax(-1)
    np.testing.assert_array_equal(ids, want_ids)
    book = np.asarray(variables["params"]["codevectors"].value).reshape(G, V, DIM // G)
    want = np.concatenate([book[g][want_ids[..., g]] for g in range(G)], axis=-1)
    np.testing.assert_allclose(out, want, rtol=1e-6)

    # Eval perplexity: of the one-hot codes averaged over valid frames (HF semantics).
    onehot = np.eye(V)[want_ids][np.asarray(valid)]  # [N, G, V]
    marginal = onehot.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(marginal > 0, marginal * np.log(marginal), 0.0), -1)
    np.testing.assert_allclose(perplexity, np.exp(ent).sum(), rtol=1e-5)


def test_train_perplexity_is_soft_and_sampling_is_one_hot():
    module, variables, x = _init()
    apply = jax.jit(module.apply, static_argnames="train")
    out, perplexity, ids = apply(
        variables, x, None, 1.0, train=True, rngs={"gumbel": jax.random.key(3)}
    )
    logits = _logits(variables, x).reshape(3, 5, G, V)
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    marginal = soft.reshape(-1, G, V).mean(0)
    want = np.exp(-(marginal * np.log(marginal)).sum(-1)).sum()
    np.testing.assert_allclose(perplexity, want, rtol=1e-5)
    # Forward output is still an exact codebook lookup of the sampled ids.
    book = np.asarray(variables["params"]["codevectors"].value).reshape(G, V, DIM // G)
    ids = np.asarray(ids)
    want_out = np.concatenate([book[g][ids[..., g]] for g in range(G)], axis=-1)
    np.testing.assert_allclose(out, want_out, atol=1e-6)


def test_straight_through_gradient_reaches_projection():
    module, variables, x = _init()
    params = variables["params"]

    def loss(p):
        out, _, _ = module.apply(
            {"params": p}, x, None, 2.0, train=True, rngs={"gumbel": jax.random.key(4)}
        )
        return jnp.sum(out * jnp.arange(DIM))

    grads = jax.jit(jax.grad(loss))(params)
    kernel_grad = grads["weight_proj"]["kernel"].value
    assert np.all(np.isfinite(kernel_grad))
    assert float(jnp.abs(kernel_grad).sum()) > 0
    assert float(jnp.abs(grads["codevectors"].value).sum()) > 0


def test_bf16_compute_dtype():
    module, variables, x = _init(dtype=jnp.bfloat16)
    out, perplexity, _ = jax.jit(module.apply)(variables, x, None, 2.0)
    assert out.dtype == jnp.bfloat16 and perplexity.dtype == jnp.float32


def test_parity_with_hugging_face_in_eval_mode():
    torch = hf_deps.load("torch")
    wav2vec2 = hf_deps.load("transformers.models.wav2vec2.modeling_wav2vec2")
    config = wav2vec2.Wav2Vec2Config(
        conv_dim=(C,) * 7,
        num_codevector_groups=G,
        num_codevectors_per_group=V,
        codevector_dim=DIM,
    )
    torch.manual_seed(0)
    hf = wav2vec2.Wav2Vec2GumbelVectorQuantizer(config).eval()
    torch.nn.init.normal_(hf.weight_proj.weight)
    torch.nn.init.uniform_(hf.weight_proj.bias)
    torch.nn.init.uniform_(hf.codevectors)

    module = GumbelVectorQuantizer(num_groups=G, num_vars=V, codevector_dim=DIM)
    x = np.random.default_rng(0).normal(size=(2, 7, C)).astype(np.float32)
    variables = jax.jit(module.init)(jax.random.key(0), jnp.asarray(x))
    params = jax.tree.map(lambda p: p, variables["params"])
    params["weight_proj"]["kernel"] = params["weight_proj"]["kernel"].replace_boxed(
        jnp.asarray(hf.weight_proj.weight.detach().numpy().T)
    )  # torch Linear is [out, in]
    params["weight_proj"]["bias"] = params["weight_proj"]["bias"].replace_boxed(
        jnp.asarray(hf.weight_proj.bias.detach().numpy())
    )
    params["codevectors"] = params["codevectors"].replace_boxed(
        jnp.asarray(hf.codevectors.detach().numpy()[0])
    )

    valid = np.ones((2, 7), bool)
    valid[1, 4:] = False
    with torch.no_grad():
        want_out, want_ppl = hf(torch.from_numpy(x), torch.from_numpy(valid))
    out, ppl, _ = jax.jit(module.apply)({"params": params}, jnp.asarray(x), jnp.asarray(valid), 2.0)
    np.testing.assert_allclose(out, want_out.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ppl, want_ppl.item(), rtol=1e-5)
