"""Catalogue of ``poems.ipynb``'s model parts: ``CharLM`` (``char_lm``) and ``train_tbptt``."""

from . import Answer

_LM = '''class CharLM(nn.Module):
    """Embedding -> LSTM -> Linear."""

{body}
'''

_LM_INIT = '''    def __init__(self, vocab_size, embedding_size, hidden_size, num_layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, num_layers, batch_first={batch_first})
        self.head = nn.Linear(hidden_size, vocab_size)
'''

_LM_FORWARD = '''
    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x), state)
        return self.head(out), state'''

LM_TESTS = ("test_char_lm_shapes", "test_char_lm_values", "test_char_lm_training")


def _lm(key, description, body, correct=True, fails=(), message=""):
    return Answer("char_lm", key, description, _LM.format(body=body), correct, fails, message)


_TRAIN = '''def train_tbptt(model, inputs, targets, epochs, lr, clip):
    """Truncated BPTT over the windows; the mean window loss of each epoch."""
{body}
'''

TRAIN_TESTS = ("test_train_tbptt_state", "test_train_tbptt_steps")


def _loop(carry="    if state is not None:\n                state = tuple(s.detach() for s in state)",
          loss="F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))",
          clip="nn.utils.clip_grad_norm_(model.parameters(), clip)",
          optimizer="torch.optim.Adam(model.parameters(), lr=lr)") -> str:
    return f'''    optimizer = {optimizer}
    losses = []
    for _ in range(epochs):
        state, total = None, 0.0
        for x, y in zip(inputs, targets):
        {carry}
            logits, state = model(x, state)
            loss = {loss}
            optimizer.zero_grad()
            loss.backward()
            {clip}
            optimizer.step()
            total += loss.item()
        losses.append(total / len(inputs))
    return losses'''


def _train(key, description, body, correct=True, fails=(), message=""):
    return Answer("train_tbptt", key, description, _TRAIN.format(body=body), correct, fails, message)


ANSWERS = [
    _lm("reference", "three layers as attributes", _LM_INIT.format(batch_first=True) + _LM_FORWARD),
    _lm("sequential_names", "other attribute names, the state unpacked",
        '''    def __init__(self, vocab_size, embedding_size, hidden_size, num_layers):
        super().__init__()
        self.fc = nn.Linear(hidden_size, vocab_size)
        self.rnn = nn.LSTM(input_size=embedding_size, hidden_size=hidden_size, num_layers=num_layers,
                           batch_first=True)
        self.emb = nn.Embedding(vocab_size, embedding_size)

    def forward(self, x, state=None):
        if state is None:
            out, (h, c) = self.rnn(self.emb(x))
        else:
            out, (h, c) = self.rnn(self.emb(x), state)
        return self.fc(out), (h, c)'''),
    _lm("no_batch_first", "nn.LSTM without batch_first=True",
        _LM_INIT.format(batch_first=False) + _LM_FORWARD, False, LM_TESTS, "batch_first"),
    _lm("state_ignored", "forward drops the state it is given",
        _LM_INIT.format(batch_first=True) + '''
    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x))
        return self.head(out), state''', False, ("test_char_lm_values",), "ignores the state"),
    _lm("no_context", "each character on its own: the LSTM sees one step at a time from a zero state",
        _LM_INIT.format(batch_first=True) + '''
    def forward(self, x, state=None):
        b, t = x.shape
        out, _ = self.lstm(self.embedding(x).reshape(b * t, 1, -1))
        out = out.reshape(b, t, -1)
        h = out[:, -1].unsqueeze(0).repeat(self.lstm.num_layers, 1, 1).contiguous()
        return self.head(out), (h, torch.zeros_like(h))''', False, ("test_char_lm_values", "test_char_lm_training"),
        "CharLM's"),
    _lm("softmax_output", "returns probabilities instead of logits",
        _LM_INIT.format(batch_first=True) + '''
    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x), state)
        return torch.softmax(self.head(out), dim=-1), state''', False, ("test_char_lm_values", "test_char_lm_training"),
        "probabilities"),
    _train("reference", "as the contract says", _loop()),
    _train("detach_each_step_copy", "detach with a list comprehension, F.cross_entropy on flattened views",
           _loop(carry="    state = None if state is None else tuple([h.detach() for h in state])",
                 loss="F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))")),
    _train("no_detach", "the state carried without detach", _loop(carry="    pass"), False, TRAIN_TESTS,
           "not detached"),
    _train("state_reset", "the state reset every window", _loop(carry="    state = None"), False, TRAIN_TESTS,
           "reset every window"),
    _train("no_clip", "no gradient clipping", _loop(clip="pass"), False, ("test_train_tbptt_steps",),
           "not clipped"),
    _train("per_parameter_clip", "each parameter clipped on its own",
           _loop(clip="[nn.utils.clip_grad_norm_([p], clip) for p in model.parameters()]"), False,
           ("test_train_tbptt_steps",), "on its own"),
    _train("summed_loss", "the window's loss summed",
           _loop(loss="F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction='sum')"),
           False, ("test_train_tbptt_steps",), "summed"),
    _train("sgd", "SGD instead of Adam", _loop(optimizer="torch.optim.SGD(model.parameters(), lr=lr)"), False,
           ("test_train_tbptt_steps",), "SGD"),
]
