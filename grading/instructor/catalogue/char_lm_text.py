"""Catalogue of the text parts of ``poems.ipynb``: build_vocab, make_batches, perplexity, sample."""

from . import Answer

_VOCAB = '''def build_vocab(text):
    """(stoi, itos) of the characters of text; itos[0] is UNKNOWN."""
{body}
'''

_BATCHES = '''def make_batches(ids, batch_size, seq_len):
    """d2l's sequential partitioning with offset 0: (inputs, targets), each (num_windows, batch_size, seq_len)."""
{body}
'''

_PERPLEXITY = '''def perplexity(logits, targets):
    """exp of the mean natural-log cross-entropy over every position."""
{body}
'''

_SAMPLE = '''def sample(model, stoi, itos, prompt, length, temperature, generator):
    """prompt followed by length characters drawn from the model."""
{body}
'''


def _answer(template: str, exercise: str, key: str, description: str, body: str, fails: tuple[str, ...] = (),
            message: str = "") -> Answer:
    return Answer(exercise, key, description, template.format(body=body), not fails, fails, message)


def _vocab(key, description, body, fails=(), message=""):
    return _answer(_VOCAB, "build_vocab", key, description, body, fails, message)


def _batches(key, description, body, fails=(), message=""):
    return _answer(_BATCHES, "make_batches", key, description, body, fails, message)


def _perplexity(key, description, body, fails=(), message=""):
    return _answer(_PERPLEXITY, "perplexity", key, description, body, fails, message)


def _sample(key, description, body, fails=(), message=""):
    return _answer(_SAMPLE, "sample", key, description, body, fails, message)


VOCAB = ("test_build_vocab",)
BATCHES = ("test_make_batches",)
PERPLEXITY = ("test_perplexity",)
INTERFACE, DISTRIBUTION = ("test_sample_interface",), ("test_sample_distribution",)

_D2L = """    n = (len(ids) - 1) // batch_size
    num_windows = n // seq_len
    if num_windows == 0:
        raise ValueError("the text is too short for one window per row")
    xs = ids[:n * batch_size].view(batch_size, n)
    ys = ids[1:n * batch_size + 1].view(batch_size, n)
{windows}"""
_STACK = """    inputs = torch.stack([xs[:, k * seq_len:(k + 1) * seq_len] for k in range(num_windows)])
    targets = torch.stack([ys[:, k * seq_len:(k + 1) * seq_len] for k in range(num_windows)])
    return inputs, targets"""
_PERMUTE = """    inputs = xs[:, :num_windows * seq_len].reshape(batch_size, num_windows, seq_len).permute(1, 0, 2)
    targets = ys[:, :num_windows * seq_len].reshape(batch_size, num_windows, seq_len).permute(1, 0, 2)
    return inputs.contiguous(), targets.contiguous()"""

# The reference sample: the prompt once, then one character at a time, carrying the state.
_SAMPLE_BODY = """    if temperature < 0:
        raise ValueError("the temperature must be >= 0")
    ids = [stoi.get(ch, 0) for ch in prompt]
    out = []
    with torch.no_grad():
        logits, state = model(torch.tensor([ids], dtype=torch.long), None)
        for step in range(length):
            last = logits[0, -1]
{draw}
            out.append(itos[next_id])
            if step < length - 1:
                logits, state = model(torch.tensor([[next_id]], dtype=torch.long), state)
    return prompt + "".join(out)"""
_DRAW = """            if temperature == 0:
                next_id = int(last.argmax())
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                next_id = int(torch.multinomial(probs, 1, generator=generator))"""


def _sample_body(draw: str = _DRAW, replace: dict[str, str] | None = None) -> str:
    body = _SAMPLE_BODY.format(draw=draw)
    for old, new in (replace or {}).items():
        if old not in body:
            raise ValueError(f"catalogue: {old!r} is not in the reference sample")
        body = body.replace(old, new)
    return body


ANSWERS = [
    # ------------------------------------------------------------------ build_vocab
    _vocab("reference", "[UNKNOWN] + sorted(set(text)), dict comprehension",
           '    itos = ["\\ufffd"] + sorted(set(text))\n    stoi = {ch: i for i, ch in enumerate(itos)}\n'
           "    return stoi, itos"),
    _vocab("dict_zip", "dict(zip(itos, range(len(itos)))), UNKNOWN from the course helpers",
           "    itos = [UNKNOWN, *sorted(set(text))]\n    stoi = dict(zip(itos, range(len(itos))))\n"
           "    return stoi, itos"),
    _vocab("no_unknown", "forgets the unknown entry at index 0",
           "    itos = sorted(set(text))\n    stoi = {ch: i for i, ch in enumerate(itos)}\n    return stoi, itos",
           VOCAB, "no unknown entry at index 0"),
    _vocab("unsorted", "list(set(text)): the order of a set",
           '    itos = ["\\ufffd"] + list(dict.fromkeys(text))\n    stoi = {ch: i for i, ch in enumerate(itos)}\n'
           "    return stoi, itos", VOCAB, "not sorted"),
    _vocab("stoi_offset", "stoi numbers the characters from 0 while itos starts with UNKNOWN",
           '    chars = sorted(set(text))\n    itos = ["\\ufffd"] + chars\n'
           "    stoi = {ch: i for i, ch in enumerate(chars)}\n    return stoi, itos", VOCAB, "inverse of itos"),
    _vocab("swapped", "returns (itos, stoi)",
           '    itos = ["\\ufffd"] + sorted(set(text))\n    stoi = {ch: i for i, ch in enumerate(itos)}\n'
           "    return itos, stoi", VOCAB, "must be a dict"),
    # ------------------------------------------------------------------ make_batches
    _batches("reference", "torch.stack of slices", _D2L.format(windows=_STACK)),
    _batches("permute", "reshape to (batch_size, num_windows, seq_len), then permute", _D2L.format(windows=_PERMUTE)),
    _batches("unfold", "Tensor.unfold then transpose",
             _D2L.format(windows="    inputs = xs.unfold(1, seq_len, seq_len).transpose(0, 1)\n"
                                 "    targets = ys.unfold(1, seq_len, seq_len).transpose(0, 1)\n"
                                 "    return inputs.contiguous(), targets.contiguous()")),
    _batches("interleaved", "reshapes the rows straight to (num_windows, batch_size, seq_len): rows do not continue",
             _D2L.format(windows="    shape = (num_windows, batch_size, seq_len)\n"
                                 "    inputs = xs[:, :num_windows * seq_len].reshape(shape)\n"
                                 "    targets = ys[:, :num_windows * seq_len].reshape(shape)\n"
                                 "    return inputs, targets"), BATCHES, "must continue row b of window k"),
    _batches("stream_windows", "cuts the stream into windows first: ids[:m].view(num_windows, batch_size, seq_len)",
             "    n = (len(ids) - 1) // batch_size\n    num_windows = n // seq_len\n    if num_windows == 0:\n"
             "        raise ValueError('too short')\n    m = num_windows * batch_size * seq_len\n"
             "    return ids[:m].view(num_windows, batch_size, seq_len), ids[1:m + 1].view(num_windows, batch_size, "
             "seq_len)", BATCHES, "must continue row b of window k"),
    _batches("not_shifted", "targets are the inputs (ys from ids[:n * batch_size])",
             _D2L.format(windows=_STACK).replace("ys = ids[1:n * batch_size + 1]", "ys = ids[:n * batch_size]"),
             BATCHES, "shifted by one"),
    _batches("shifted_back", "targets are the characters before the inputs (xs from ids[1:], ys from ids[:-1])",
             _D2L.format(windows=_STACK).replace("xs = ids[:n * batch_size]", "xs = ids[1:n * batch_size + 1]")
             .replace("ys = ids[1:n * batch_size + 1]", "ys = ids[:n * batch_size]"), BATCHES, "wrong way"),
    _batches("no_value_error", "returns empty batches when num_windows == 0",
             "    n = (len(ids) - 1) // batch_size\n    num_windows = n // seq_len\n"
             "    xs = ids[:n * batch_size].view(batch_size, n)\n"
             "    ys = ids[1:n * batch_size + 1].view(batch_size, n)\n"
             "    inputs = xs[:, :num_windows * seq_len].reshape(batch_size, num_windows, seq_len).transpose(0, 1)\n"
             "    targets = ys[:, :num_windows * seq_len].reshape(batch_size, num_windows, seq_len).transpose(0, 1)\n"
             "    return inputs, targets", BATCHES, "must raise ValueError"),
    _batches("float_ids", "builds the windows as a float tensor",
             _D2L.format(windows=_STACK).replace("    return inputs, targets",
                                                 "    return inputs.float(), targets.float()"),
             BATCHES, "expected torch.int64"),
    # ------------------------------------------------------------------ perplexity
    _perplexity("reference", "F.cross_entropy on the flattened positions, exp, .item()",
                "    vocab_size = logits.shape[-1]\n"
                "    loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))\n"
                "    return math.exp(loss.item())"),
    _perplexity("gather", "log_softmax and gather",
                "    log_p = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1))\n"
                "    return float(torch.exp(-log_p.mean()))"),
    _perplexity("bits", "loss in bits, 2 ** bits",
                "    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))\n"
                "    return 2 ** (loss.item() / math.log(2))"),
    _perplexity("window_means", "mean of the windows' mean losses (equal windows), then exp",
                "    flat = logits.reshape(logits.shape[0], -1, logits.shape[-1])\n"
                "    losses = [F.cross_entropy(w, t.reshape(-1)) for w, t in zip(flat, targets.reshape(len(flat), -1))]"
                "\n    return math.exp(torch.stack(losses).mean().item())"),
    _perplexity("summed", "exp of the summed loss",
                "    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), "
                "reduction='sum')\n    return math.exp(loss.item())", PERPLEXITY, "summed loss"),
    _perplexity("base2_nats", "2 ** the loss in nats",
                "    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))\n"
                "    return 2 ** loss.item()", PERPLEXITY, "log bases"),
    _perplexity("exp_bits", "exp of the loss in bits",
                "    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))\n"
                "    return math.exp(loss.item() / math.log(2))", PERPLEXITY, "log bases"),
    _perplexity("window_perplexities", "mean of per-window perplexities",
                "    flat = logits.reshape(logits.shape[0], -1, logits.shape[-1])\n"
                "    values = [torch.exp(F.cross_entropy(w, t.reshape(-1)))\n"
                "              for w, t in zip(flat, targets.reshape(len(flat), -1))]\n"
                "    return torch.stack(values).mean().item()", PERPLEXITY, "averages perplexities"),
    _perplexity("tensor", "returns a 0-d tensor",
                "    return torch.exp(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)))",
                PERPLEXITY, ".item()"),
    _perplexity("mean_loss", "returns the mean loss, not its exp",
                "    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()",
                PERPLEXITY, "exp of it"),
    # ------------------------------------------------------------------ sample
    _sample("reference", "softmax(logits / temperature), torch.multinomial, prompt fed once", _sample_body()),
    _sample("exp_normalise", "probabilities by exp and normalise, greedy via torch.argmax, a list of ids",
            _sample_body("""            if temperature == 0:
                next_id = torch.argmax(last).item()
            else:
                weights = torch.exp((last - last.max()) / temperature)
                next_id = torch.multinomial(weights / weights.sum(), 1, generator=generator).item()"""),
            ),
    _sample("feeds_last_too", "feeds every generated character back, the last one too; F.softmax",
            _sample_body(replace={"if step < length - 1:": "if True:",
                                  "probs = torch.softmax(last / temperature, dim=-1)":
                                  "probs = F.softmax(last / temperature, dim=0)"})),
    _sample("multiplied", "multiplies the logits by the temperature",
            _sample_body(replace={"last / temperature": "last * temperature"}),
            INTERFACE + DISTRIBUTION, "divide"),
    _sample("always_argmax", "argmax at every temperature",
            _sample_body("""            next_id = int(last.argmax())"""), DISTRIBUTION, "always picks the same"),
    _sample("no_temperature", "ignores the temperature (softmax(logits))",
            _sample_body(replace={"last / temperature": "last"}), INTERFACE + DISTRIBUTION, "divide"),
    _sample("char_by_char_reset", "feeds the prompt one character at a time, without carrying the state",
            _sample_body(replace={"logits, state = model(torch.tensor([ids], dtype=torch.long), None)":
                            "for i in ids:\n            logits, state = model(torch.tensor([[i]]), None)"}),
            INTERFACE, "feed the whole prompt"),
    _sample("state_reset", "resets the state at every step",
            _sample_body(replace={"model(torch.tensor([[next_id]], dtype=torch.long), state)":
                            "model(torch.tensor([[next_id]], dtype=torch.long), None)"}),
            INTERFACE, "state is not carried"),
    _sample("negative_accepted", "accepts a negative temperature",
            _sample_body(replace={"    if temperature < 0:\n"
                                  "        raise ValueError(\"the temperature must be >= 0\")\n": ""}),
            INTERFACE, "negative temperature must raise ValueError"),
    _sample("first_logits", "reads logits[0, 0]",
            _sample_body(replace={"last = logits[0, -1]": "last = logits[0, 0]"}), INTERFACE, "logits[0, -1]"),
    _sample("global_rng", "draws with torch's global random generator",
            _sample_body(replace={"torch.multinomial(probs, 1, generator=generator)": "torch.multinomial(probs, 1)"}),
            INTERFACE, "generator"),
    _sample("unknown_dropped", "drops prompt characters that are not in stoi",
            _sample_body(replace={"ids = [stoi.get(ch, 0) for ch in prompt]":
                                  "ids = [stoi[ch] for ch in prompt if ch in stoi]"}),
            INTERFACE, "map to 0"),
]
