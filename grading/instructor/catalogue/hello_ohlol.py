"""Catalogue of the hello_ohlol assignment: one_hot, OneHotRNN (the Linear head), EmbeddingRNN."""

from . import Answer

_ONE_HOT = '''def one_hot(indices, num_classes):
    """One row per index: zeros with a 1 in column indices[i]."""
{body}
'''


_BY_HAND = "write it by hand: zeros, then set a 1 per row"


def _one_hot(key, description, body, correct=True, message=""):
    return Answer("one_hot", key, description, _ONE_HOT.format(body=body), correct,
                  () if correct else ("test_one_hot",), message)


_HEAD_TESTS = ("test_one_hot_rnn_head", "test_one_hot_rnn_head_training")


def _head(key, description, source, correct=True, fails=_HEAD_TESTS, message=""):
    return Answer("one_hot_rnn_head", key, description, source, correct, () if correct else fails, message)


_EMB_TESTS = ("test_embedding_rnn_shape", "test_embedding_rnn_structure", "test_embedding_rnn_training")


def _emb(key, description, source, correct=True, fails=_EMB_TESTS, message=""):
    return Answer("embedding_rnn", key, description, source, correct, () if correct else fails, message)


HEAD_REFERENCE = '''class OneHotRNN(nn.Module):
    def __init__(self, input_size, hidden_size, num_class):
        super().__init__()
        self.num_class = num_class
        self.rnn = nn.RNN(input_size=input_size, hidden_size=hidden_size)
        self.fc = nn.Linear(hidden_size, num_class)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out).view(-1, self.num_class)
'''

EMBEDDING_REFERENCE = '''class EmbeddingRNN(nn.Module):
    def __init__(self, num_class, embedding_size, hidden_size, num_layers):
        super().__init__()
        self.num_class = num_class
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.emb = nn.Embedding(num_class, embedding_size)
        self.rnn = nn.RNN(input_size=embedding_size, hidden_size=hidden_size,
                          num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_class)

    def forward(self, x):
        hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size)
        x = self.emb(x)
        x, _ = self.rnn(x, hidden)
        x = self.fc(x)
        return x.view(-1, self.num_class)
'''

# The model of Liu Er's notes (sections 2.3/2.4) turned into the contract's class: no head.
HEAD_NO_HEAD = '''class OneHotRNN(nn.Module):
    def __init__(self, input_size, hidden_size, num_class):
        super().__init__()
        self.num_class = num_class
        self.rnn = nn.RNN(input_size=input_size, hidden_size=num_class)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out.view(-1, self.num_class)
'''

# The embedding built once, outside the model (the LSTM + embedding homework of Liu Er's notes).
EMBEDDING_OUTSIDE = '''embedding = nn.Embedding(4, 10)


class EmbeddingRNN(nn.Module):
    def __init__(self, num_class, embedding_size, hidden_size, num_layers):
        super().__init__()
        self.num_class = num_class
        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_class)

    def forward(self, x):
        out, _ = self.rnn(embedding(x))
        return self.fc(out).reshape(-1, self.num_class)
'''


def _emb_class(init: str, forward: str) -> str:
    return ("class EmbeddingRNN(nn.Module):\n"
            "    def __init__(self, num_class, embedding_size, hidden_size, num_layers):\n"
            "        super().__init__()\n"
            "        self.num_class = num_class\n" + init + "\n\n"
            "    def forward(self, x):\n" + forward + "\n")


def _head_class(init: str, forward: str) -> str:
    return ("class OneHotRNN(nn.Module):\n"
            "    def __init__(self, input_size, hidden_size, num_class):\n"
            "        super().__init__()\n"
            "        self.num_class = num_class\n" + init + "\n\n"
            "    def forward(self, x):\n" + forward + "\n")


_HEAD_INIT = ("        self.rnn = nn.RNN(input_size, hidden_size)\n"
              "        self.fc = nn.Linear(hidden_size, num_class)")
_EMB_INIT = ("        self.emb = nn.Embedding(num_class, embedding_size)\n"
             "        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers, batch_first=True)\n"
             "        self.fc = nn.Linear(hidden_size, num_class)")

ANSWERS = [
    # ------------------------------------------------------------------ one_hot
    _one_hot("eye", "rows of the identity matrix",
             "    return torch.eye(num_classes)[torch.as_tensor(indices)]"),
    _one_hot("scatter", "scatter_ into zeros",
             "    idx = torch.as_tensor(indices).view(-1, 1)\n"
             "    return torch.zeros(len(idx), num_classes).scatter_(1, idx, 1.0)"),
    _one_hot("loop", "loop over a zeros tensor",
             "    out = torch.zeros(len(indices), num_classes)\n"
             "    for i, k in enumerate(indices):\n        out[i, int(k)] = 1\n    return out"),
    _one_hot("index_assign", "zeros, then one indexing assignment; a local variable named one_hot",
             "    idx = torch.as_tensor(indices, dtype=torch.long)\n"
             "    one_hot = torch.zeros(len(idx), num_classes)\n"
             "    one_hot[torch.arange(len(idx)), idx] = 1.0\n    return one_hot"),
    _one_hot("comparison", "compares each index with arange(num_classes)",
             "    return (torch.as_tensor(indices)[:, None] == torch.arange(num_classes)).float()"),
    _one_hot("lookup_table", "the notes' lookup table, built for num_classes",
             "    table = [[1 if j == k else 0 for j in range(num_classes)] for k in range(num_classes)]\n"
             "    return torch.tensor([table[int(k)] for k in indices], dtype=torch.float32)"),
    _one_hot("long", "returns a LongTensor", correct=False, message="expected torch.float32",
             body="    idx = torch.as_tensor(indices)\n"
                  "    out = torch.zeros(len(idx), num_classes, dtype=torch.long)\n"
                  "    out[torch.arange(len(idx)), idx] = 1\n    return out"),
    _one_hot("transposed", "one column per index", correct=False, message="transpose",
             body="    return torch.eye(num_classes)[torch.as_tensor(indices)].T"),
    _one_hot("off_by_one", "counts columns from 1", correct=False, message="one column left",
             body="    out = torch.zeros(len(indices), num_classes)\n"
                  "    for i, k in enumerate(indices):\n        out[i, int(k) - 1] = 1\n    return out"),
    _one_hot("width_from_data", "takes the width from the largest index", correct=False,
             message="whatever the largest index is",
             body="    idx = torch.as_tensor(indices)\n    return torch.eye(int(idx.max()) + 1)[idx]"),
    _one_hot("tensor_only", "fails on a Python list", correct=False, message="torch.as_tensor",
             body="    out = torch.zeros(indices.numel(), num_classes)\n"
                  "    out[torch.arange(indices.numel()), indices] = 1.0\n    return out"),
    # From scratch: F.one_hot is the function the exercise reimplements, whichever way it is reached.
    _one_hot("f_one_hot", "F.one_hot(...).float(), as the lecture shows it", correct=False, message=_BY_HAND,
             body="    return F.one_hot(torch.as_tensor(indices), num_classes).float()"),
    _one_hot("f_one_hot_full_path", "torch.nn.functional.one_hot spelt out", correct=False, message=_BY_HAND,
             body="    return torch.nn.functional.one_hot(torch.as_tensor(indices), num_classes).to(torch.float32)"),
    _one_hot("f_one_hot_getattr", "F.one_hot reached through getattr", correct=False, message=_BY_HAND,
             body="    encode = getattr(F, 'one_' + 'hot')\n"
                  "    return encode(torch.as_tensor(indices), num_classes).float()"),
    _one_hot("f_one_hot_imported", "F.one_hot imported under another name", correct=False, message=_BY_HAND,
             body="    from torch.nn.functional import one_hot as encode\n"
                  "    return encode(torch.as_tensor(indices), num_classes).float()"),
    _one_hot("f_one_hot_c", "torch._C._nn.one_hot, the function behind F.one_hot", correct=False, message=_BY_HAND,
             body="    return torch._C._nn.one_hot(torch.as_tensor(indices), num_classes).float()"),
    _one_hot("f_one_hot_aten", "the aten operator through torch.ops", correct=False, message=_BY_HAND,
             body="    return torch.ops.aten.one_hot(torch.as_tensor(indices), num_classes).float()"),
    # ------------------------------------------------------------------ OneHotRNN (the Linear head)
    _head("reference", "rnn + fc, view", HEAD_REFERENCE),
    _head("names_reshape", "other attribute names, reshape, out_features",
          "class OneHotRNN(nn.Module):\n"
          "    def __init__(self, input_size, hidden_size, num_class):\n"
          "        super().__init__()\n"
          "        self.recurrent = nn.RNN(input_size=input_size, hidden_size=hidden_size, num_layers=1)\n"
          "        self.head = nn.Linear(in_features=hidden_size, out_features=num_class)\n\n"
          "    def forward(self, x):\n"
          "        hidden_states = self.recurrent(x)[0]\n"
          "        return self.head(hidden_states).reshape(-1, self.head.out_features)\n"),
    _head("explicit_h0", "passes h0 = zeros explicitly",
          _head_class(_HEAD_INIT + "\n        self.hidden_size = hidden_size",
                      "        h0 = torch.zeros(1, x.size(1), self.hidden_size)\n"
                      "        out, _ = self.rnn(x, h0)\n"
                      "        return self.fc(out.reshape(-1, self.hidden_size))")),
    _head("batch_first_permute", "batch_first=True with transposes in and out",
          _head_class("        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)\n"
                      "        self.fc = nn.Linear(hidden_size, num_class)",
                      "        out, _ = self.rnn(x.transpose(0, 1))\n"
                      "        return self.fc(out.transpose(0, 1)).reshape(-1, self.num_class)")),
    _head("no_head", "the notes' model: hidden state as logits", HEAD_NO_HEAD, correct=False,
          message="no nn.Linear head"),
    _head("hidden_reset", "runs each step with a fresh h0", correct=False, message="resets the hidden state",
          source=_head_class(_HEAD_INIT,
                             "        steps = [self.rnn(x[t:t + 1])[0] for t in range(x.size(0))]\n"
                             "        return self.fc(torch.cat(steps)).reshape(-1, self.num_class)")),
    _head("not_flattened", "returns (seq_len, batch, num_class)", correct=False, message="reshape(-1, num_class)",
          source=_head_class(_HEAD_INIT, "        out, _ = self.rnn(x)\n        return self.fc(out)")),
    _head("batch_major", "flattens in (batch, seq_len) order", correct=False, fails=("test_one_hot_rnn_head",),
          message="wrong order",
          source=_head_class(_HEAD_INIT, "        out, _ = self.rnn(x)\n"
                                         "        return self.fc(out).transpose(0, 1).reshape(-1, self.num_class)")),
    _head("head_to_input_size", "the head maps to input_size instead of num_class", correct=False,
          fails=("test_one_hot_rnn_head",), message="one logit per class",
          source=_head_class("        self.rnn = nn.RNN(input_size, hidden_size)\n"
                             "        self.fc = nn.Linear(hidden_size, input_size)",
                             "        out, _ = self.rnn(x)\n"
                             "        return self.fc(out).reshape(-1, self.fc.out_features)")),
    _head("softmax", "returns probabilities", correct=False, message="softmax",
          source=_head_class(_HEAD_INIT,
                             "        out, _ = self.rnn(x)\n"
                             "        return torch.softmax(self.fc(out), dim=-1).reshape(-1, self.num_class)")),
    _head("tanh_after_head", "squashes the head's output with tanh", correct=False, message="all lie in [-1, 1]",
          source=_head_class(_HEAD_INIT, "        out, _ = self.rnn(x)\n"
                                         "        return torch.tanh(self.fc(out)).reshape(-1, self.num_class)")),
    # ------------------------------------------------------------------ EmbeddingRNN
    _emb("reference", "the notes' model with the contract's arguments (h0 explicit, view)", EMBEDDING_REFERENCE),
    _emb("names_reshape", "other names, no h0, reshape",
         "class EmbeddingRNN(nn.Module):\n"
         "    def __init__(self, num_class, embedding_size, hidden_size, num_layers):\n"
         "        super().__init__()\n"
         "        self.head = nn.Linear(hidden_size, num_class)\n"
         "        self.lookup = nn.Embedding(num_embeddings=num_class, embedding_dim=embedding_size)\n"
         "        self.recurrent = nn.RNN(embedding_size, hidden_size, num_layers=num_layers, batch_first=True)\n\n"
         "    def forward(self, x):\n"
         "        states, _ = self.recurrent(self.lookup(x))\n"
         "        return self.head(states).reshape(-1, self.head.out_features)\n"),
    _emb("flatten_first", "flattens the hidden states, then the head",
         _emb_class(_EMB_INIT + "\n        self.hidden_size = hidden_size",
                    "        out, _ = self.rnn(self.emb(x))\n"
                    "        return self.fc(out.reshape(-1, self.hidden_size))")),
    _emb("transposes", "seq-first RNN with transposes in and out",
         _emb_class("        self.emb = nn.Embedding(num_class, embedding_size)\n"
                    "        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers)\n"
                    "        self.fc = nn.Linear(hidden_size, num_class)",
                    "        out, _ = self.rnn(self.emb(x).transpose(0, 1))\n"
                    "        return self.fc(out.transpose(0, 1)).reshape(-1, self.num_class)")),
    _emb("no_head", "hidden state as logits", correct=False, fails=_EMB_TESTS[1:], message="no nn.Linear head",
         source=_emb_class("        self.emb = nn.Embedding(num_class, embedding_size)\n"
                           "        self.rnn = nn.RNN(embedding_size, num_class, num_layers, batch_first=True)",
                           "        out, _ = self.rnn(self.emb(x))\n        return out.reshape(-1, self.num_class)")),
    _emb("embedding_outside", "the embedding is a global, built outside the model", EMBEDDING_OUTSIDE,
         correct=False, message="registered nn.Embedding"),
    _emb("embedding_in_list", "the embedding kept in a plain list (not registered)", correct=False,
         fails=_EMB_TESTS[1:], message="registered nn.Embedding",
         source=_emb_class("        self.parts = [nn.Embedding(num_class, embedding_size)]\n"
                           "        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers, batch_first=True)\n"
                           "        self.fc = nn.Linear(hidden_size, num_class)",
                           "        out, _ = self.rnn(self.parts[0](x))\n"
                           "        return self.fc(out).reshape(-1, self.num_class)")),
    _emb("frozen_embedding", "Embedding.from_pretrained freezes it", correct=False,
         fails=("test_embedding_rnn_training",), message="did not change",
         source=_emb_class("        self.emb = nn.Embedding.from_pretrained(torch.randn(num_class, embedding_size))\n"
                           "        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers, batch_first=True)\n"
                           "        self.fc = nn.Linear(hidden_size, num_class)",
                           "        out, _ = self.rnn(self.emb(x))\n"
                           "        return self.fc(out).reshape(-1, self.num_class)")),
    _emb("hidden_reset", "one time step at a time, each from h0 = 0", correct=False, fails=_EMB_TESTS[1:],
         message="resets the hidden state",
         source=_emb_class(_EMB_INIT,
                           "        e = self.emb(x)\n"
                           "        steps = [self.rnn(e[:, t:t + 1])[0] for t in range(x.size(1))]\n"
                           "        return self.fc(torch.cat(steps, dim=1)).reshape(-1, self.num_class)")),
    _emb("not_flattened", "returns (batch, seq_len, num_class)", correct=False, message="reshape(-1, num_class)",
         source=_emb_class(_EMB_INIT, "        out, _ = self.rnn(self.emb(x))\n        return self.fc(out)")),
    _emb("batch_first_missing", "nn.RNN without batch_first=True", correct=False, fails=_EMB_TESTS[1:],
         message="batch_first=False",
         source=_emb_class("        self.emb = nn.Embedding(num_class, embedding_size)\n"
                           "        self.rnn = nn.RNN(embedding_size, hidden_size, num_layers)\n"
                           "        self.fc = nn.Linear(hidden_size, num_class)",
                           "        out, _ = self.rnn(self.emb(x))\n"
                           "        return self.fc(out).reshape(-1, self.num_class)")),
    _emb("seq_major", "flattens in (seq_len, batch) order", correct=False, fails=("test_embedding_rnn_structure",),
         message="wrong order",
         source=_emb_class(_EMB_INIT, "        out, _ = self.rnn(self.emb(x))\n"
                                      "        return self.fc(out).transpose(0, 1).reshape(-1, self.num_class)")),
    _emb("embedding_swapped", "nn.Embedding(embedding_size, num_class): arguments swapped", correct=False,
         message="You swapped its arguments",
         source=_emb_class("        self.emb = nn.Embedding(embedding_size, num_class)\n"
                           "        self.rnn = nn.RNN(num_class, hidden_size, num_layers, batch_first=True)\n"
                           "        self.fc = nn.Linear(hidden_size, num_class)",
                           "        out, _ = self.rnn(self.emb(x))\n"
                           "        return self.fc(out).reshape(-1, self.num_class)")),
    _emb("ignores_num_layers", "builds a one-layer nn.RNN whatever num_layers says", correct=False,
         fails=_EMB_TESTS[1:], message="expected num_layers=",
         source=_emb_class("        self.emb = nn.Embedding(num_class, embedding_size)\n"
                           "        self.rnn = nn.RNN(embedding_size, hidden_size, batch_first=True)\n"
                           "        self.fc = nn.Linear(hidden_size, num_class)",
                           "        out, _ = self.rnn(self.emb(x))\n"
                           "        return self.fc(out).reshape(-1, self.num_class)")),
    _emb("h_n", "uses h_n instead of the output", correct=False, message="h_n",
         source=_emb_class(_EMB_INIT, "        _, h_n = self.rnn(self.emb(x))\n"
                                      "        return self.fc(h_n).reshape(-1, self.num_class)")),
]
