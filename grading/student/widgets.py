"""Interactive explorers for the lecture notebooks in ``notebooks/``.

Every explorer has two halves:

* pure functions that compute (tensors, lists of floats, text) and render (SVG or HTML
  strings), testable without a browser;
* a builder, ``*_explorer()``, that wires ipywidgets controls to them. It returns an
  :class:`Explorer`: change ``explorer.controls[name].value`` (a student drags a slider,
  a test assigns the value) and ``explorer.view.value`` is recomputed.

Nothing here answers a graded exercise: the models are PyTorch's built-in modules and the
hidden-state-as-logits model of Liu Er's notes (lecture 12).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Explorer",
    "line_plot_svg",
    "hidden_states",
    "sequence_svg",
    "hidden_state_explorer",
    "describe_rnn_run",
    "shapes_explorer",
    "IDX2CHAR",
    "logit_bound_loss",
    "train_notes_rnn",
    "hello_ohlol_explorer",
    "embedding_lookup",
    "embedding_lookup_html",
    "embedding_explorer",
    "input_gradient_norms",
    "gradient_norms_explorer",
]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


# --------------------------------------------------------------------------- wiring


class Explorer(widgets.VBox):
    """Controls above one HTML view; the view is ``render(**values of the controls)``.

    ``controls`` maps a keyword of ``render`` to its widget; ``view`` is the ``HTML``
    widget that shows the result.
    """

    def __init__(self, controls: Mapping[str, widgets.ValueWidget], render: Callable[..., str]):
        super().__init__()
        self.controls = dict(controls)
        self.render = render
        self.view = widgets.HTML()
        row = widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.children = (row, self.view)
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.refresh()

    def values(self) -> dict:
        """The current value of every control, by keyword."""
        return {name: control.value for name, control in self.controls.items()}

    def refresh(self) -> None:
        """Recompute the view from the controls."""
        self.view.value = self.render(**self.values())

    def _on_change(self, change) -> None:
        self.refresh()


def _slider(description: str, value: int, low: int, high: int, step: int = 1) -> widgets.IntSlider:
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style={"description_width": "initial"})


def _float_slider(description: str, value: float, low: float, high: float, step: float) -> widgets.FloatSlider:
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                               continuous_update=False, style={"description_width": "initial"})


# --------------------------------------------------------------------------- plots


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line_plot_svg(
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    log_y: bool = False,
    hline: float | None = None,
    hline_label: str = "",
    x_start: int = 1,
    width: int = 460,
    height: int = 240,
) -> str:
    """A small SVG line plot: one polyline per entry of ``series``, x = x_start, x_start + 1, ...

    With ``log_y`` the y axis is logarithmic and non-positive values are left out.
    ``hline`` draws a dashed horizontal reference line (e.g. a lower bound of the loss).
    """
    left, right, top, bottom = 64, 14, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    transform = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    ys = [transform(v) for values in series.values() for v in values
          if math.isfinite(v) and (v > 0 or not log_y)]
    if hline is not None and (hline > 0 or not log_y):
        ys.append(transform(hline))
    y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if not log_y:
        y_lo = min(y_lo, 0.0)
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    n = max((len(v) for v in series.values()), default=1)
    x_hi = x_start + max(n - 1, 1)

    def px(x: float) -> float:
        return left + (x - x_start) / (x_hi - x_start) * plot_w

    def py(y: float) -> float:
        return top + (y_hi - y) / (y_hi - y_lo) * plot_h

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' {FONT} font-size='11'>",
           f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='white' stroke='#888'/>"]
    if log_y:
        step = max(1, math.ceil((y_hi - y_lo) / 5))
        ticks = [float(d) for d in range(math.ceil(y_lo), math.floor(y_hi) + 1) if d % step == 0]
        labels = [f"1e{int(t)}" for t in ticks]
    else:
        step = _nice_step(y_hi - y_lo)
        first = math.ceil(y_lo / step) * step
        ticks = [first + k * step for k in range(int((y_hi - first) / step + 1e-9) + 1)]
        labels = [_fmt(round(t, 10)) for t in ticks]
    for tick, label in zip(ticks, labels, strict=True):
        y = py(tick)
        out.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' stroke='#eee'/>")
        out.append(f"<text x='{left - 5}' y='{y + 4:.1f}' text-anchor='end'>{label}</text>")
    x_step = max(1, int(_nice_step(x_hi - x_start, 6)))
    for x in range(x_start, x_hi + 1):
        if x % x_step == 0 or x == x_start:
            out.append(f"<text x='{px(x):.1f}' y='{top + plot_h + 14}' text-anchor='middle'>{x}</text>")
    if hline is not None and (hline > 0 or not log_y):
        y = py(transform(hline))
        out.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' "
                   "stroke='#555' stroke-dasharray='5,4'/>")
        out.append(f"<text x='{left + plot_w - 4}' y='{y - 4:.1f}' text-anchor='end' fill='#555'>"
                   f"{html.escape(hline_label)}</text>")
    legend_x = left
    for k, (label, values) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        points = [f"{px(x_start + i):.1f},{py(transform(v)):.1f}" for i, v in enumerate(values)
                  if math.isfinite(v) and (v > 0 or not log_y)]
        if len(points) == 1:
            x, y = points[0].split(",")
            out.append(f"<circle cx='{x}' cy='{y}' r='2.5' fill='{color}'/>")
        elif points:
            out.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{' '.join(points)}'/>")
        out.append(f"<rect x='{legend_x}' y='{top - 13}' width='14' height='3' fill='{color}'/>")
        out.append(f"<text x='{legend_x + 19}' y='{top - 8}'>{html.escape(label)}</text>")
        legend_x += 40 + 7 * len(label)
    out.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 6}' text-anchor='middle'>{html.escape(xlabel)}</text>")
    out.append(f"<text transform='translate(13,{top + plot_h / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{html.escape(ylabel)}</text>")
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- 01: h_t over time


def hidden_states(seq_len: int = 5, input_size: int = 3, hidden_size: int = 4,
                  input_scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one random sequence through a fresh ``nn.RNN`` (tanh, one layer, h0 = zeros).

    Returns ``(inputs, hiddens)``: inputs (seq_len, input_size) are the x_t, drawn from
    N(0, input_scale**2); hiddens (seq_len, hidden_size) are h_1 ... h_seq_len.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = nn.RNN(input_size=input_size, hidden_size=hidden_size)
    inputs = torch.randn(seq_len, 1, input_size, generator=gen) * input_scale
    with torch.no_grad():
        output, _ = rnn(inputs)
    return inputs[:, 0], output[:, 0]


def _bars(values: Sequence[float], x: float, y0: float, half: float, limit: float, color: str) -> list[str]:
    out = []
    for k, v in enumerate(values):
        h = max(-1.0, min(1.0, v / limit)) * half
        top = y0 - max(h, 0.0)
        out.append(f"<rect x='{x + 9 * k:.1f}' y='{top:.1f}' width='7' height='{abs(h):.1f}' fill='{color}'/>")
    return out


def sequence_svg(inputs: torch.Tensor, hiddens: torch.Tensor, t: int) -> str:
    """Draw the unrolled RNN up to step ``t`` (1-based): bars of x_t below each cell, bars of
    h_t above; the h bars are drawn on the fixed scale [-1, 1] (tanh's range)."""
    seq_len = len(inputs)
    col = 100
    width, height = 40 + col * seq_len, 250
    x_lim = max(float(inputs.abs().max()), 1e-6)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' {FONT} font-size='12'>"]
    out.append("<text x='4' y='52' fill='#d45500'>+1</text><text x='4' y='112' fill='#d45500'>-1</text>")
    out.append("<text x='4' y='154' font-size='11'>h0=0</text>")
    for s in range(seq_len):
        x0 = 40 + col * s
        done = s < t
        opacity = "1" if done else "0.25"
        out.append(f"<g opacity='{opacity}'>")
        fill = "#ffe9c6" if s == t - 1 else "#f4f4f4"
        out.append(f"<rect x='{x0 + 10}' y='145' width='60' height='34' rx='6' fill='{fill}' stroke='#333'/>")
        out.append(f"<text x='{x0 + 40}' y='167' text-anchor='middle'>RNN cell</text>")
        out.append(f"<line x1='{x0 - 30}' y1='162' x2='{x0 + 10}' y2='162' stroke='#333' "
                   "marker-end='url(#rnn-arrow)'/>")
        out.append(f"<line x1='{x0 + 40}' y1='215' x2='{x0 + 40}' y2='179' stroke='#333'/>")
        out.append(f"<line x1='{x0 + 40}' y1='145' x2='{x0 + 40}' y2='118' stroke='#333'/>")
        out.append(f"<line x1='{x0 + 4}' y1='80' x2='{x0 + 76}' y2='80' stroke='#bbb'/>")
        out.append(f"<line x1='{x0 + 4}' y1='50' x2='{x0 + 76}' y2='50' stroke='#f0d0b0' stroke-dasharray='3,3'/>")
        out.append(f"<line x1='{x0 + 4}' y1='110' x2='{x0 + 76}' y2='110' stroke='#f0d0b0' stroke-dasharray='3,3'/>")
        if done:
            out += _bars(hiddens[s].tolist(), x0 + 40 - 4.5 * hiddens.shape[1], 80, 30, 1.0, "#d45500")
        out += _bars(inputs[s].tolist(), x0 + 40 - 4.5 * inputs.shape[1], 222, 14, x_lim, "#1f77b4")
        out.append(f"<text x='{x0 + 40}' y='20' text-anchor='middle'>h{s + 1}</text>")
        out.append(f"<text x='{x0 + 40}' y='248' text-anchor='middle'>x{s + 1}</text>")
        out.append("</g>")
    out.insert(1, "<defs><marker id='rnn-arrow' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
                  "<path d='M0,0 L8,4 L0,8 z' fill='#333'/></marker></defs>")
    out.append("</svg>")
    return "".join(out)


def _hidden_state_view(t: int, seq_len: int, input_scale: float, seed: int) -> str:
    t = min(t, seq_len)
    inputs, hiddens = hidden_states(seq_len=seq_len, input_scale=input_scale, seed=seed)
    h = ", ".join(f"{v:+.3f}" for v in hiddens[t - 1].tolist())
    x = ", ".join(f"{v:+.3f}" for v in inputs[t - 1].tolist())
    return (sequence_svg(inputs, hiddens, t)
            + f"<pre>x{t} = [{x}]   (inputs[{t - 1}]: Python counts from 0)\n"
              f"h{t} = [{h}]   (output[{t - 1}]; every entry in [-1, 1])</pre>")


def hidden_state_explorer(seq_len: int = 6, seed: int = 0) -> Explorer:
    """Step through a sequence with the slider ``t`` (1 ... seq_len, as in h_t; h_0 is the
    initial state) and watch h_t; ``input_scale`` makes the inputs larger to show that tanh
    keeps h_t in [-1, 1]. ``seed`` is the random seed of the weights and inputs."""
    t = _slider("t", 1, 1, seq_len)
    length = _slider("seq_len", seq_len, 2, 8)
    controls = {"t": t, "seq_len": length,
                "input_scale": _float_slider("input_scale", 1.0, 0.1, 10.0, 0.1),
                "seed": _slider("seed", seed, 0, 20)}

    def follow_length(change) -> None:
        t.max = change["new"]

    length.observe(follow_length, names="value")
    return Explorer(controls, _hidden_state_view)


# --------------------------------------------------------------------------- 02: shapes


def describe_rnn_run(seq_len: int, batch_size: int, input_size: int, hidden_size: int,
                     num_layers: int = 1, batch_first: bool = False) -> str:
    """Run a real ``nn.RNN`` on random data and print the ``.shape`` of what goes in and out.

    The input is drawn as (seq_len, batch_size, input_size) and transposed when
    ``batch_first``; h0 is ``torch.zeros_like`` of the h_n that PyTorch returns.
    Returns the printed report (plain text): each tensor's shape and what its dimensions are.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rnn = nn.RNN(input_size=input_size, hidden_size=hidden_size,
                     num_layers=num_layers, batch_first=batch_first)
        inputs = torch.randn(seq_len, batch_size, input_size)
    if batch_first:
        inputs = inputs.transpose(0, 1)
    with torch.no_grad():
        _, probe = rnn(inputs)
        h0 = torch.zeros_like(probe)
        output, h_n = rnn(inputs, h0)
    sequence = "(batch_size, seq_len, {})" if batch_first else "(seq_len, batch_size, {})"
    state = "(num_layers, batch_size, hidden_size)"
    rows = [("inputs", inputs, sequence.format("input_size")), ("h0", h0, state),
            ("output", output, sequence.format("hidden_size")), ("h_n", h_n, state)]
    lines = [f"rnn = nn.RNN(input_size={input_size}, hidden_size={hidden_size}, "
             f"num_layers={num_layers}, batch_first={batch_first})",
             "output, h_n = rnn(inputs, h0)", ""]
    lines += [f"{name:<7} {str(tuple(tensor.shape)):<14} {dims}" for name, tensor, dims in rows]
    top = num_layers - 1
    lines += ["", f"h_n[k]: the last step of layer k, k = 0 ... {top} (its weights end in _l{{k}})",
              f"output: the top layer (layer {top}) at every step; its last step equals h_n[-1]"]
    return "\n".join(lines)


def _shapes_view(**kwargs) -> str:
    return f"<pre style='font-size:13px'>{html.escape(describe_rnn_run(**kwargs))}</pre>"


def shapes_explorer() -> Explorer:
    """Pick seq_len, batch_size, input_size, hidden_size, num_layers and batch_first; see
    the shape of every tensor a real ``nn.RNN`` reads and returns."""
    controls = {
        "seq_len": _slider("seq_len", 3, 1, 9),
        "batch_size": _slider("batch_size", 2, 1, 9),
        "input_size": _slider("input_size", 4, 1, 9),
        "hidden_size": _slider("hidden_size", 5, 1, 9),
        "num_layers": _slider("num_layers", 1, 1, 4),
        "batch_first": widgets.Checkbox(value=False, description="batch_first"),
    }
    return Explorer(controls, _shapes_view)


# --------------------------------------------------------------------------- 03: hello -> ohlol

IDX2CHAR = ("e", "h", "l", "o")
X_DATA = (1, 0, 2, 2, 3)  # hello
Y_DATA = (3, 1, 2, 3, 2)  # ohlol


def logit_bound_loss(num_class: int = 4, seq_len: int = 1) -> float:
    """Smallest cross-entropy reachable when every logit lies in [-1, 1] (a tanh hidden state
    used as logits): target logit +1, all others -1, for each of ``seq_len`` steps."""
    return seq_len * math.log(1 + (num_class - 1) * math.exp(-2))


def train_notes_rnn(lr: float = 0.1, num_epochs: int = 15, num_layers: int = 1, seed: int = 0) -> dict:
    """Train the nn.RNN model of Liu Er's notes (lecture 12) on hello -> ohlol; return its history.

    The model is the notes' (section 2.4): one-hot inputs, ``nn.RNN(4, 4, num_layers)``,
    the hidden state used directly as the 4 logits, mean cross-entropy, Adam; ``seed`` is
    the random seed of the initial weights. Returns
    ``{"losses": [...], "predictions": [...]}``, one entry per epoch (the prediction is
    made in the same forward pass as the loss, before that epoch's step).
    """
    num_class = hidden_size = input_size = len(IDX2CHAR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = nn.RNN(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    inputs = F.one_hot(torch.tensor(X_DATA), num_class).float().view(len(X_DATA), 1, input_size)
    labels = torch.tensor(Y_DATA)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(rnn.parameters(), lr=lr)
    losses, predictions = [], []
    for _ in range(num_epochs):
        optimizer.zero_grad()
        out, _ = rnn(inputs)
        logits = out.view(-1, hidden_size)
        loss = criterion(logits, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        predictions.append("".join(IDX2CHAR[i] for i in logits.argmax(dim=1).tolist()))
    return {"losses": losses, "predictions": predictions}


def _hello_view(lr: float, num_epochs: int, num_layers: int, seed: int) -> str:
    history = train_notes_rnn(lr=lr, num_epochs=num_epochs, num_layers=num_layers, seed=seed)
    bound = logit_bound_loss(len(IDX2CHAR))
    final = history["predictions"][-1]
    verdict = "reached" if final == "ohlol" else "did not reach"
    plot = line_plot_svg({"mean loss": history["losses"]}, xlabel="epoch", ylabel="loss",
                         hline=bound, hline_label=f"floor {bound:.3f} (logits in [-1, 1])")
    return (f"<pre>predicted after epoch {num_epochs}: {final}   ({verdict} 'ohlol')\n"
            f"final loss: {history['losses'][-1]:.4f}   floor: {bound:.4f}</pre>" + plot)


def hello_ohlol_explorer() -> Explorer:
    """Train the notes' hidden-as-logits nn.RNN on hello -> ohlol with your lr, num_epochs,
    num_layers and random seed; see the loss curve, its floor and the predicted string.
    (hidden_size is fixed at 4: the hidden state *is* the 4 logits.)"""
    controls = {
        "lr": widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.1, description="lr",
                                     continuous_update=False, readout_format=".3f"),
        "num_epochs": _slider("num_epochs", 15, 1, 200),
        "num_layers": _slider("num_layers", 1, 1, 3),
        "seed": _slider("seed", 0, 0, 50),
    }
    return Explorer(controls, _hello_view)


# --------------------------------------------------------------------------- 04: embedding


def embedding_lookup(index: int, embedding_size: int = 5, seed: int = 0) -> dict:
    """Look up ``index`` in a fresh ``nn.Embedding(4, embedding_size)`` two ways.

    Returns ``{"one_hot": (4,), "weight": (4, embedding_size), "lookup": (embedding_size,),
    "product": (embedding_size,)}`` where lookup = embedding(index) and
    product = one_hot @ weight (built with ``F.one_hot``): the two are equal.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        embedding = nn.Embedding(len(IDX2CHAR), embedding_size)
    idx = torch.tensor(index)
    with torch.no_grad():
        one_hot = F.one_hot(idx, len(IDX2CHAR)).float()
        return {"one_hot": one_hot, "weight": embedding.weight.clone(),
                "lookup": embedding(idx), "product": one_hot @ embedding.weight}


def _cells(values: Sequence[float], fmt: str, highlight: bool = False) -> str:
    style = "background:#ffe9c6;font-weight:bold" if highlight else ""
    return "".join(f"<td style='padding:2px 6px;text-align:right;{style}'>{format(v, fmt)}</td>" for v in values)


def embedding_lookup_html(index: int, embedding_size: int = 5, seed: int = 0) -> str:
    """HTML of :func:`embedding_lookup`: the one-hot vector, the weight table with the chosen
    row highlighted, the looked-up vector, and whether ``embedding_size`` reduces the dimension
    of the 4-character one-hot vectors or expands it."""
    parts = embedding_lookup(index, embedding_size, seed)
    rows = "".join(
        f"<tr><th style='padding:2px 6px'>{IDX2CHAR[r]} ({r})</th>"
        f"<td style='padding:2px 10px;text-align:center'>{int(parts['one_hot'][r])}</td>"
        f"{_cells(parts['weight'][r].tolist(), '+.3f', highlight=r == index)}</tr>"
        for r in range(len(IDX2CHAR)))
    header = "".join(f"<th style='padding:2px 6px'>{j}</th>" for j in range(embedding_size))
    same = torch.equal(parts["lookup"], parts["product"])
    vocab = len(IDX2CHAR)
    if embedding_size < vocab:
        effect = "fewer numbers: the dimension is reduced (降维)"
    elif embedding_size == vocab:
        effect = "as many numbers as one-hot"
    else:
        effect = "more numbers: the dimension grows"
    return (f"<table style='border-collapse:collapse;font-family:monospace'>"
            f"<tr><th>char (index)</th><th>one-hot</th>{header}</tr>{rows}</table>"
            f"<pre>embedding(torch.tensor({index}))      = "
            f"[{', '.join(f'{v:+.3f}' for v in parts['lookup'].tolist())}]\n"
            f"one_hot('{IDX2CHAR[index]}') @ embedding.weight = "
            f"[{', '.join(f'{v:+.3f}' for v in parts['product'].tolist())}]\n"
            f"equal: {same}\n"
            f"one-hot: {vocab} numbers per character; embedding: {embedding_size}, {effect}</pre>")


def embedding_explorer() -> Explorer:
    """Pick a character and an embedding_size; see the one-hot vector select one row of the
    embedding's weight table."""
    controls = {
        "index": widgets.Dropdown(options=[(c, i) for i, c in enumerate(IDX2CHAR)], value=1, description="char"),
        "embedding_size": _slider("embedding_size", 5, 1, 10),
        "seed": _slider("seed", 0, 0, 20),
    }
    return Explorer(controls, embedding_lookup_html)


# --------------------------------------------------------------------------- 05: gradients over time

_RECURRENT = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


def input_gradient_norms(kind: str, seq_len: int = 100, hidden_size: int = 32, input_size: int = 8,
                         gate_bias: float = 0.0, seed: int = 0) -> list[float]:
    """Norm of d loss / d x_t for every time step t, for a fresh built-in ``nn.RNN``,
    ``nn.LSTM`` or ``nn.GRU`` (float64, one layer) on one random sequence.

    The loss is the sum of the last output, so the norm at step t says how much the end
    of the sequence still "hears" x_t. ``gate_bias`` is added to the bias of the LSTM's
    forget gate (block f of bias_ih) or the GRU's update gate (block z): a large value
    keeps the additive path open. It is ignored for the plain RNN.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _RECURRENT[kind](input_size=input_size, hidden_size=hidden_size).double()
        x = torch.randn(seq_len, 1, input_size, dtype=torch.float64)
    if kind != "RNN" and gate_bias:
        with torch.no_grad():
            model.bias_ih_l0[hidden_size:2 * hidden_size] += gate_bias  # f in (i, f, g, o); z in (r, z, n)
    x.requires_grad_(True)
    output, _ = model(x)
    output[-1].sum().backward()
    return x.grad.norm(dim=(1, 2)).tolist()


def _gradient_view(seq_len: int, hidden_size: int, gate_bias: float, seed: int) -> str:
    norms = {kind: input_gradient_norms(kind, seq_len, hidden_size, gate_bias=gate_bias, seed=seed)
             for kind in _RECURRENT}
    ratios = "   ".join(f"{k}: {v[0] / v[-1]:.1e}" for k, v in norms.items())
    return (line_plot_svg(norms, xlabel="time step t", ylabel="||d loss / d x_t||", log_y=True, width=520)
            + f"<pre>first step / last step:   {ratios}</pre>")


def gradient_norms_explorer() -> Explorer:
    """Watch how the gradient reaching x_t shrinks with the distance to the end of the
    sequence, for nn.RNN, nn.LSTM and nn.GRU; ``gate_bias`` opens the LSTM's forget gate
    and the GRU's update gate."""
    controls = {
        "seq_len": _slider("seq_len", 100, 10, 200, 10),
        "hidden_size": _slider("hidden_size", 32, 4, 128, 4),
        "gate_bias": _float_slider("gate_bias", 0.0, 0.0, 4.0, 0.5),
        "seed": _slider("seed", 0, 0, 20),
    }
    return Explorer(controls, _gradient_view)
