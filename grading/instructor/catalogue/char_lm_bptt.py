"""Catalogue of the ``char_lm`` assignment's ``bptt.ipynb``: ``rnn_bptt`` and ``clip_grad_norm``."""

from . import Answer

_BPTT = '''def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):
    """Gradients of (outputs * grad_outputs).sum() for the tanh RNN, by hand."""
{body}
'''
_BPTT_TESTS = ("test_rnn_bptt_shapes", "test_rnn_bptt_values")


def _bptt(key, description, body, correct=True, fails=("test_rnn_bptt_values",), message=""):
    return Answer("rnn_bptt", key, description, _BPTT.format(body=body), correct, () if correct else fails, message)


_CLIP = '''def clip_grad_norm(parameters, max_norm):
    """Clip the gradients of parameters to a global L2 norm of max_norm, in place; return the norm before."""
{body}
'''


def _clip(key, description, body, correct=True, message=""):
    return Answer("clip_grad_norm", key, description, _CLIP.format(body=body), correct,
                  () if correct else ("test_clip_grad_norm",), message)


# The reference loop, with the places the wrong answers change.
_LOOP = '''    hs = [h0]
    for x_t in inputs:
        hs.append(torch.tanh(x_t @ weight_ih.T + bias_ih + hs[-1] @ weight_hh.T + bias_hh))
    d_inputs = torch.zeros_like(inputs)
    d_w_ih, d_w_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
    d_b = torch.zeros_like(bias_ih)
    dh_next = torch.zeros_like(h0)
    for t in reversed(range(inputs.shape[0])):
        dh = {dh}
        da = {da}
        d_inputs[t] = da @ weight_ih
        d_w_ih += da.T @ inputs[t]
        d_w_hh += da.T @ hs[t]
        d_b += da.sum(dim=0)
        dh_next = da @ weight_hh
    return {{"inputs": d_inputs, "h0": dh_next, "weight_ih": d_w_ih, "weight_hh": d_w_hh,
            "bias_ih": d_b, "bias_hh": d_b.clone()}}'''


def _loop(dh="grad_outputs[t] + dh_next", da="dh * (1 - hs[t + 1] ** 2)"):
    return _LOOP.format(dh=dh, da=da)


ANSWERS = [
    _bptt("loop", "forward loop keeping every h, then a backward loop carrying dh_next", _loop()),
    _bptt("precomputed", "input projections of every step at once, pre-activations kept, weight grads at the end",
          "    seq_len = inputs.shape[0]\n"
          "    xw = inputs @ weight_ih.T + bias_ih\n"
          "    h, hs = h0, []\n"
          "    for t in range(seq_len):\n"
          "        h = torch.tanh(xw[t] + h @ weight_hh.T + bias_hh)\n"
          "        hs.append(h)\n"
          "    outputs = torch.stack(hs)\n"
          "    previous = torch.cat([h0.unsqueeze(0), outputs[:-1]])\n"
          "    das = torch.empty_like(outputs)\n"
          "    carry = torch.zeros_like(h0)\n"
          "    for t in range(seq_len - 1, -1, -1):\n"
          "        das[t] = (grad_outputs[t] + carry) * (1 - outputs[t] * outputs[t])\n"
          "        carry = das[t] @ weight_hh\n"
          "    return {'inputs': das @ weight_ih, 'h0': carry,\n"
          "            'weight_ih': das.flatten(0, 1).T @ inputs.flatten(0, 1),\n"
          "            'weight_hh': das.flatten(0, 1).T @ previous.flatten(0, 1),\n"
          "            'bias_ih': das.sum(dim=(0, 1)), 'bias_hh': das.sum(dim=(0, 1))}"),
    _bptt("einsum", "einsum everywhere, a local variable named grad",
          "    states = [h0]\n"
          "    for t in range(len(inputs)):\n"
          "        a = torch.einsum('bi,hi->bh', inputs[t], weight_ih) + torch.einsum('bk,hk->bh', states[-1], "
          "weight_hh)\n"
          "        states.append(torch.tanh(a + bias_ih + bias_hh))\n"
          "    grads = {'inputs': torch.zeros_like(inputs), 'weight_ih': torch.zeros_like(weight_ih),\n"
          "             'weight_hh': torch.zeros_like(weight_hh), 'bias_ih': torch.zeros_like(bias_ih)}\n"
          "    grad = torch.zeros_like(h0)\n"
          "    for t in range(len(inputs) - 1, -1, -1):\n"
          "        grad = (grad + grad_outputs[t]) * (1 - states[t + 1].pow(2))\n"
          "        grads['inputs'][t] = torch.einsum('bh,hi->bi', grad, weight_ih)\n"
          "        grads['weight_ih'] += torch.einsum('bh,bi->hi', grad, inputs[t])\n"
          "        grads['weight_hh'] += torch.einsum('bh,bk->hk', grad, states[t])\n"
          "        grads['bias_ih'] += grad.sum(0)\n"
          "        grad = torch.einsum('bh,hk->bk', grad, weight_hh)\n"
          "    grads['h0'] = grad\n"
          "    grads['bias_hh'] = grads['bias_ih'].clone()\n"
          "    return grads"),
    _bptt("no_tanh_derivative", "the tanh derivative (1 - h_t^2) left out", _loop(da="dh"), False,
          message="missing the tanh derivative (1 - h_t^2)"),
    _bptt("no_recurrent_gradient", "only grad_outputs reaches h_t: the gradient from step t+1 is dropped",
          _loop(dh="grad_outputs[t]"), False, message="missing the gradient that flows into h_t from step t+1"),
    _bptt("tanh_of_h", "derivative written 1 - tanh(h_t)^2", _loop(da="dh * (1 - torch.tanh(hs[t + 1]) ** 2)"),
          False, message="1 - tanh(h_t)^2"),
    _bptt("weight_ih_transposed", "x^T @ da: weight_ih's gradient has shape (input_size, hidden_size)",
          _loop().replace("d_w_ih += da.T @ inputs[t]", "d_w_ih = d_w_ih + inputs[t].T @ da")
          .replace("d_w_ih, d_w_hh = torch.zeros_like(weight_ih)", "d_w_ih, d_w_hh = torch.zeros_like(weight_ih.T)"),
          False, _BPTT_TESTS, message="has shape"),
    _bptt("float32_accumulators", "accumulators made with torch.zeros (float32) for float64 inputs",
          _loop().replace("d_b = torch.zeros_like(bias_ih)", "d_b = torch.zeros(bias_ih.shape)"),
          False, _BPTT_TESTS, message="dtype float32"),
    _bptt("autograd_backward", "autograd: requires_grad_ and .backward()",
          "    leaves = [t.detach().clone().requires_grad_() for t in (inputs, h0, weight_ih, weight_hh, bias_ih,"
          " bias_hh)]\n"
          "    x, h, w_ih, w_hh, b_ih, b_hh = leaves\n"
          "    total = 0\n"
          "    for t in range(len(x)):\n"
          "        h = torch.tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)\n"
          "        total = total + (h * grad_outputs[t]).sum()\n"
          "    total.backward()\n"
          "    names = ['inputs', 'h0', 'weight_ih', 'weight_hh', 'bias_ih', 'bias_hh']\n"
          "    return {n: l.grad for n, l in zip(names, leaves)}",
          False, _BPTT_TESTS, message="by hand"),
    _bptt("autograd_grad", "autograd: torch.autograd.grad",
          "    leaves = [t.detach().clone().requires_grad_() for t in (inputs, h0, weight_ih, weight_hh, bias_ih,"
          " bias_hh)]\n"
          "    x, h, w_ih, w_hh, b_ih, b_hh = leaves\n"
          "    outputs = []\n"
          "    for t in range(len(x)):\n"
          "        h = torch.tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)\n"
          "        outputs.append(h)\n"
          "    grads = torch.autograd.grad((torch.stack(outputs) * grad_outputs).sum(), leaves)\n"
          "    return dict(zip(['inputs', 'h0', 'weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'], grads))",
          False, _BPTT_TESTS, message="by hand"),
    _clip("cat", "one vector of every gradient (torch.cat), then mul_",
          "    grads = [p.grad for p in parameters if p.grad is not None]\n"
          "    total = torch.cat([g.flatten() for g in grads]).norm(2)\n"
          "    coef = max_norm / (total + 1e-6)\n"
          "    if coef < 1:\n"
          "        for g in grads:\n"
          "            g.mul_(coef)\n"
          "    return total.item()"),
    _clip("sum_of_squares", "list first, sum of squares in float64, float factor",
          "    params = [p for p in list(parameters) if p.grad is not None]\n"
          "    total = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))\n"
          "    factor = max_norm / (total + 1e-6)\n"
          "    if factor < 1:\n"
          "        for p in params:\n"
          "            p.grad.mul_(factor)\n"
          "    return total"),
    _clip("norm_of_norms", "norm of the per-tensor norms, as torch does (torch.stack, torch.clamp)",
          "    grads = [p.grad for p in parameters if p.grad is not None]\n"
          "    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))\n"
          "    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)\n"
          "    for g in grads:\n"
          "        g.mul_(coef.to(g.dtype))\n"
          "    return float(total)"),
    _clip("per_parameter", "clips each gradient by its own norm",
          "    total = 0.0\n"
          "    for p in parameters:\n"
          "        if p.grad is None:\n"
          "            continue\n"
          "        norm = p.grad.norm().item()\n"
          "        total += norm ** 2\n"
          "        if max_norm / (norm + 1e-6) < 1:\n"
          "            p.grad.mul_(max_norm / (norm + 1e-6))\n"
          "    return total ** 0.5",
          False, message="each parameter's gradient by its own norm"),
    _clip("norm_after", "returns the norm after clipping",
          "    grads = [p.grad for p in parameters if p.grad is not None]\n"
          "    total = torch.cat([g.flatten() for g in grads]).norm()\n"
          "    coef = max_norm / (total + 1e-6)\n"
          "    if coef < 1:\n"
          "        for g in grads:\n"
          "            g.mul_(coef)\n"
          "    return torch.cat([g.flatten() for g in grads]).norm().item()",
          False, message="the norm *after* clipping"),
    _clip("generator_twice", "iterates parameters twice (a generator is empty the second time)",
          "    total = sum((p.grad ** 2).sum() for p in parameters if p.grad is not None) ** 0.5\n"
          "    coef = max_norm / (total + 1e-6)\n"
          "    if coef < 1:\n"
          "        for p in parameters:\n"
          "            if p.grad is not None:\n"
          "                p.grad.mul_(coef)\n"
          "    return float(total)",
          False, message="iterates `parameters` twice"),
    _clip("none_not_skipped", "does not skip parameters whose .grad is None",
          "    params = list(parameters)\n"
          "    total = torch.cat([p.grad.flatten() for p in params]).norm()\n"
          "    coef = max_norm / (total + 1e-6)\n"
          "    if coef < 1:\n"
          "        for p in params:\n"
          "            p.grad.mul_(coef)\n"
          "    return total.item()",
          False, message="skip those parameters"),
    _clip("not_in_place", "replaces .grad with a new tensor instead of scaling it in place",
          "    params = [p for p in parameters if p.grad is not None]\n"
          "    total = torch.cat([p.grad.flatten() for p in params]).norm()\n"
          "    coef = max_norm / (total + 1e-6)\n"
          "    if coef < 1:\n"
          "        for p in params:\n"
          "            p.grad = p.grad * coef\n"
          "    return total.item()",
          False, message="in place"),
    _clip("always_scales", "scales by max_norm / (total_norm + 1e-6) even when that factor is above 1",
          "    params = [p for p in parameters if p.grad is not None]\n"
          "    total = torch.cat([p.grad.flatten() for p in params]).norm()\n"
          "    for p in params:\n"
          "        p.grad.mul_(max_norm / (total + 1e-6))\n"
          "    return total.item()",
          False, message="below max_norm"),
    _clip("returns_tensor", "returns the norm as a tensor",
          "    grads = [p.grad for p in parameters if p.grad is not None]\n"
          "    total = torch.cat([g.flatten() for g in grads]).norm()\n"
          "    coef = max_norm / (total + 1e-6)\n"
          "    if coef < 1:\n"
          "        for g in grads:\n"
          "            g.mul_(coef)\n"
          "    return total",
          False, message="as a Python float"),
    _clip("torch_clip", "calls torch.nn.utils.clip_grad_norm_",
          "    return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))",
          False, message="earn no points"),
]
