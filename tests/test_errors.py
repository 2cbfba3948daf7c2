"""Bad input fails early with a clear error; edge cases that PyTorch answers get its answer.

Each error names the argument, the value it got (shape, dtype, device) and what is allowed.
PyTorch is the oracle: where it raises, minattn raises a clearer TypeError or ValueError
(the tests check that PyTorch raises too); where it answers, minattn gives the same numbers.
"""

import numpy as np
import pytest

import minattn as ma
import minattn.functional as F
from minattn.nn import functional_nn as fnn


def f64(*shape, requires_grad=True):
    return ma.randn(*shape, dtype="float64", requires_grad=requires_grad)


# -- softmax and log_softmax ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", [((3, 0), -1), ((3, 0), 0), ((0, 3), -1), ((0, 3), 0)])
def test_softmax_of_an_empty_tensor_is_empty_as_in_pytorch(name, shape, axis, kernels, torch):
    x = ma.zeros(*shape, dtype="float64", requires_grad=True)
    y = getattr(F, name)(x, axis=axis)
    xt = torch.zeros(*shape, dtype=torch.float64, requires_grad=True)
    yt = getattr(torch, name)(xt, axis)
    assert y.shape == tuple(yt.shape) and y.dtype == np.float64
    y.backward(np.zeros(shape))
    yt.backward(torch.zeros(*shape, dtype=torch.float64))
    assert x.grad.shape == tuple(xt.grad.shape) == shape


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("data, dtype", [([1, 2, 3], "int64"), ([True, False, True], "bool")])
def test_softmax_of_integers_is_a_type_error(name, data, dtype, device, torch):
    with pytest.raises(NotImplementedError, match="not implemented for"):
        getattr(torch, name)(torch.tensor(data), -1)  # the oracle refuses it too
    x = ma.tensor(data, device=device)
    pattern = rf"{name}: input must be a floating-point tensor, got {dtype} tensor of shape " \
              rf"\(3,\) on {device}"
    with pytest.raises(TypeError, match=pattern):
        getattr(F, name)(x)
    with pytest.raises(TypeError, match=pattern):
        getattr(x, name)()


# -- swapaxes and transpose -------------------------------------------------------------------


def test_swapaxes_of_a_0d_tensor_names_the_valid_axes(torch):
    with pytest.raises(IndexError, match="Dimension out of range"):
        torch.tensor(2.0).transpose(0, 1)
    with pytest.raises(ValueError, match=r"swapaxes: axis 1 is out of range for a tensor with "
                                         r"0 dimension\(s\): expected an int in \[-1, 0\]"):
        ma.tensor(2.0).swapaxes(0, 1)
    with pytest.raises(ValueError, match=r"transpose: axis 1 is out of range .* \[-1, 0\]"):
        ma.tensor(2.0).transpose(0, 1)


@pytest.mark.parametrize("axes", [(0, 0), (0, -1), (-1, 0)])
def test_swapaxes_of_a_0d_tensor_with_itself_is_the_identity(axes, torch):
    x = ma.tensor(2.0, dtype="float64", requires_grad=True)
    y = x.swapaxes(*axes)
    assert y.shape == tuple(torch.tensor(2.0).transpose(*axes).shape) == ()
    y.backward(3.0)
    assert y.item() == 2.0 and x.grad.item() == 3.0


def test_swapaxes_out_of_range_is_an_error_not_a_wrapped_axis(torch):
    with pytest.raises(IndexError, match="Dimension out of range"):
        torch.zeros(2, 3).transpose(0, 2)
    with pytest.raises(ValueError, match=r"swapaxes: axis 2 is out of range for a tensor with 2 "
                                         r"dimension\(s\): expected an int in \[-2, 1\]"):
        ma.zeros(2, 3).swapaxes(0, 2)  # was axis 2 % 2 = 0: a silent no-op
    with pytest.raises(ValueError, match=r"transpose: axis 5 is out of range .* \[-2, 1\]"):
        ma.zeros(2, 3).transpose(0, 5)  # was NumPy's AxisError
    with pytest.raises(TypeError, match="swapaxes: an axis must be an int, got float 0.0"):
        ma.zeros(2, 3).swapaxes(0.0, 1)


# -- module constructors ----------------------------------------------------------------------


@pytest.mark.parametrize("args, error, pattern", [
    ((0, 1), ValueError, "embed_dim must be a positive int, got 0"),
    ((-4, 2), ValueError, "embed_dim must be a positive int, got -4"),
    ((8, 0), ValueError, "num_heads must be a positive int, got 0"),
    ((8.0, 2), TypeError, "embed_dim must be an int, got float 8.0"),
    ((8, 2.0), TypeError, "num_heads must be an int, got float 2.0"),
    ((True, 1), TypeError, "embed_dim must be an int, got bool True"),
    ((8, 3), ValueError, "embed_dim 8 must be divisible by num_heads 3"),
])
def test_multi_head_attention_checks_its_sizes(args, error, pattern):
    with pytest.raises(error, match=f"MultiHeadAttention: {pattern}"):
        ma.nn.MultiHeadAttention(*args)
    with pytest.raises(error, match=f"TransformerBlock: {pattern}"):
        ma.nn.TransformerBlock(*args)


@pytest.mark.parametrize("make, error, pattern", [
    (lambda: ma.nn.Linear(-1, 3), ValueError, r"Linear: in_features must be an int >= 0, got -1"),
    (lambda: ma.nn.Linear(3, -1), ValueError, r"Linear: out_features must be an int >= 0"),
    (lambda: ma.nn.Linear(2.5, 3), TypeError, r"Linear: in_features must be an int, got float"),
    (lambda: ma.nn.Linear(4, True), TypeError, r"out_features must be an int, got bool True"),
    (lambda: ma.nn.Embedding(-1, 3), ValueError, r"Embedding: num_embeddings must be an int >= 0"),
    (lambda: ma.nn.Embedding(3.0, 2), TypeError, r"Embedding: num_embeddings .* float 3.0"),
    (lambda: ma.nn.Embedding(3, -2), ValueError, r"Embedding: embedding_dim .* got -2"),
    (lambda: ma.nn.LayerNorm(-1), ValueError, r"LayerNorm: normalized_shape .* sizes >= 0.* -1"),
    (lambda: ma.nn.LayerNorm(4.0), TypeError, r"LayerNorm: normalized_shape .* float 4.0"),
    (lambda: ma.nn.LayerNorm(True), TypeError, r"LayerNorm: normalized_shape .* bool True"),
    (lambda: ma.nn.LayerNorm(()), ValueError, r"LayerNorm: normalized_shape must be a non-empty"),
    (lambda: ma.nn.Dropout("a"), TypeError, r"Dropout: p must be a number in \[0, 1\], got str"),
    (lambda: ma.nn.TransformerBlock(8, 2, mlp_ratio=-1), ValueError, r"mlp_ratio .* got -1"),
    (lambda: ma.nn.TransformerBlock(8, 2, mlp_ratio="4"), TypeError, r"mlp_ratio .* str '4'"),
    (lambda: ma.nn.Transformer(10, 8, 8, 0, 1), ValueError, r"Transformer: num_heads .* got 0"),
    (lambda: ma.nn.Transformer(0, 8, 8, 2, 1), ValueError, r"Transformer: vocab_size .* got 0"),
    (lambda: ma.nn.Transformer(10, 0, 8, 2, 1), ValueError, r"Transformer: max_len .* got 0"),
    (lambda: ma.nn.Transformer(10, 8, 8, 2, -1), ValueError, r"num_layers must be an int >= 0"),
    (lambda: ma.nn.Transformer(10, 8, 8, 2, 1.5), TypeError, r"num_layers must be an int, got"),
])
def test_module_constructors_check_their_sizes(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.filterwarnings("ignore:Initializing zero-element")
def test_linear_with_no_inputs_gives_its_bias_as_in_pytorch(torch):
    layer = ma.nn.Linear(0, 3, dtype="float64")  # was a ZeroDivisionError (1 / sqrt(0))
    x = ma.zeros(2, 0, dtype="float64", requires_grad=True)
    out = layer(x)
    out.backward(np.ones((2, 3)))
    expected = torch.nn.Linear(0, 3)(torch.zeros(2, 0))  # PyTorch starts that bias at 0
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    assert x.grad.shape == (2, 0)
    np.testing.assert_array_equal(layer.bias.grad.numpy(), [2.0, 2.0, 2.0])


@pytest.mark.filterwarnings("ignore:Initializing zero-element")
def test_sizes_of_zero_work_where_pytorch_allows_them(torch):
    for make in (lambda nn: nn.Embedding(0, 3), lambda nn: nn.Embedding(3, 0),
                 lambda nn: nn.LayerNorm(0), lambda nn: nn.Linear(3, 0)):
        ours, theirs = make(ma.nn), make(torch.nn)
        assert [p.shape for p in ours.parameters()] == \
            [tuple(p.shape) for p in theirs.parameters()]
    block = ma.nn.TransformerBlock(8, 2, mlp_ratio=0)  # an MLP of no hidden units
    assert block(ma.randn(1, 3, 8)).shape == (1, 3, 8)


# -- integer inputs to float-only layers -------------------------------------------------------


@pytest.mark.parametrize("name, call, call_torch", [
    ("layer_norm", lambda x: fnn.layer_norm(x, 3),
     lambda torch, x: torch.nn.functional.layer_norm(x, (3,))),
    ("layer_norm", lambda x: ma.nn.LayerNorm(3)(x), lambda torch, x: torch.nn.LayerNorm(3)(x)),
    ("gelu", fnn.gelu, lambda torch, x: torch.nn.functional.gelu(x)),
    ("dropout", lambda x: fnn.dropout(x, 0.5), lambda torch, x: torch.nn.functional.dropout(x)),
    (r"Linear\(3, 2\)", lambda x: ma.nn.Linear(3, 2)(x), lambda torch, x: torch.nn.Linear(3, 2)(x)),
])
def test_float_only_layers_refuse_integer_tensors(name, call, call_torch, torch):
    with pytest.raises((RuntimeError, NotImplementedError)):
        call_torch(torch, torch.tensor([[1, 2, 3]]))
    with pytest.raises(TypeError, match=rf"{name}: input must be a floating-point tensor, got "
                                        r"int64 tensor of shape \(1, 3\) on cpu"):
        call(ma.tensor([[1, 2, 3]]))


def test_dropout_that_does_nothing_passes_integers_through(torch):
    x = ma.tensor([1, 2, 3])
    for kwargs in ({"p": 0.0}, {"p": 0.5, "training": False}):
        expected = torch.nn.functional.dropout(torch.tensor([1, 2, 3]), **kwargs)
        np.testing.assert_array_equal(fnn.dropout(x, **kwargs).numpy(), expected.numpy())


def test_dropout_probability_must_be_a_number():
    with pytest.raises(TypeError, match=r"dropout: p must be a number in \[0, 1\], got NoneType"):
        fnn.dropout(ma.ones(3), None)


# -- making tensors ---------------------------------------------------------------------------


@pytest.mark.parametrize("data, dtype", [
    (["a", "b"], "<U1"), ("abc", "<U3"), ([b"a"], "|S1"), ([1, "a"], "<U21"),
    (np.array(["a"]), "<U1"), (np.array([1, None], dtype=object), "object"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), r"datetime64\[D\]"),
])
def test_tensors_hold_numbers_only(data, dtype, torch):
    with pytest.raises((TypeError, ValueError)):
        torch.tensor(data)
    with pytest.raises(TypeError, match=rf"cannot make a tensor from .* \(NumPy dtype {dtype}\): "
                                        "tensors hold numbers or booleans"):
        ma.tensor(data)
    with pytest.raises(TypeError, match=rf"NumPy dtype {dtype}"):
        ma.Tensor(np.asarray(data))


def test_a_non_numeric_dtype_is_refused():
    with pytest.raises(TypeError, match=r"dtype 'U1' \(<U1\) cannot be a tensor's dtype"):
        ma.tensor([1, 2], dtype="U1")


def test_an_operand_that_is_no_number_names_the_op():
    with pytest.raises(TypeError, match=r"add: cannot make a tensor from str 'a'"):
        ma.zeros(2, 3) + "a"  # was NumPy's UFuncTypeError


@pytest.mark.parametrize("data, where", [
    ([[1, 2], [3]], r"expected a sequence of length 2 at index \(1,\), got length 1"),
    ([[[1, 2]], [[3]]], r"length 2 at index \(1, 0\), got length 1"),
    ([[1, 2], 3], r"length 2 at index \(1,\), got the number 3"),
    ([1, [2, 3]], r"expected a number at index \(1,\), got a sequence"),
])
def test_ragged_lists_say_where_the_rows_differ(data, where, torch):
    with pytest.raises((TypeError, ValueError)):
        torch.tensor(data)
    with pytest.raises(ValueError, match=rf"cannot make a tensor from ragged data: .*{where}"):
        ma.tensor(data)


@pytest.mark.parametrize("make, error, pattern", [
    (lambda: ma.zeros(-1), ValueError, r"zeros: shape \(-1,\) has the dimension -1"),
    (lambda: ma.ones(2.0), TypeError, r"ones: a shape holds ints, got \(2.0,\) with the float"),
    (lambda: ma.randn(2, "a"), TypeError, r"randn: a shape holds ints, .* the str 'a'"),
    (lambda: ma.randn(2, dtype="int64"), TypeError, r"randn: dtype must be floating point, got "
                                                    "int64"),
])
def test_creation_functions_check_shape_and_dtype(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


# -- ops --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, error, pattern", [
    (lambda x: x.reshape(3.0, 2), TypeError, r"reshape: a shape holds ints, got \(3.0, 2\)"),
    (lambda x: x.reshape(-2, -3), ValueError, r"reshape: shape \(-2, -3\) has the dimension -2"),
    (lambda x: x.sum(axis=(0, 0)), ValueError, r"sum: axis \(0, 0\) names an axis twice"),
    (lambda x: x.sum(axis=1.0), TypeError, r"sum: an axis must be an int, got float 1.0"),
    (lambda x: x.mean(axis="1"), TypeError, r"mean: an axis must be an int, got str '1'"),
    (lambda x: x[5], IndexError, r"indexing a tensor of shape \(2, 3\) with 5: index 5 is out "
                                 "of bounds"),
    (lambda x: x[0.5], IndexError, r"indexing a tensor of shape \(2, 3\) with 0.5"),
])
def test_shape_and_axis_arguments_are_checked(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(ma.zeros(2, 3))


def test_max_over_a_non_empty_axis_of_an_empty_tensor_is_empty(torch):
    x = ma.zeros(0, 3, dtype="float64", requires_grad=True)
    y = x.max(axis=1)  # was "max of an empty tensor has no value"
    assert y.shape == tuple(torch.zeros(0, 3).amax(dim=1).shape) == (0,)
    y.backward(np.zeros(0))
    assert x.grad.shape == (0, 3)
    with pytest.raises(IndexError, match="non-zero size"):
        torch.zeros(3, 0).amax(dim=1)
    with pytest.raises(ValueError, match=r"max over axis 1 of an empty tensor of shape \(3, 0\)"):
        ma.zeros(3, 0).max(axis=1)


def test_embedding_weight_must_be_a_table(torch):
    with pytest.raises(RuntimeError, match="2-D"):
        torch.nn.functional.embedding(torch.tensor([0]), torch.randn(3))
    with pytest.raises(ValueError, match=r"embedding: weight must be a 2-D table .* got shape "
                                         r"\(3,\)"):
        fnn.embedding(ma.tensor([0]), ma.randn(3))


# -- backward ---------------------------------------------------------------------------------


def test_backward_refuses_a_complex_gradient(torch):
    with pytest.raises(RuntimeError):
        (torch.randn(3, requires_grad=True) * 2).backward(torch.ones(3) * 1j)
    y = f64(3) * 2
    with pytest.raises(TypeError, match=r"backward: grad must be real .* got complex128 tensor "
                                        r"of shape \(3,\) on cpu"):
        y.backward(np.ones(3) * 1j)  # was cast to float64, dropping the imaginary part


def test_backward_with_a_gradient_that_is_no_number():
    with pytest.raises(TypeError, match=r"backward: cannot make a tensor from str 'abc'"):
        (f64(3) * 2).backward("abc")  # was "grad has shape () but the tensor has shape (3,)"


# -- gradcheck --------------------------------------------------------------------------------


@pytest.mark.parametrize("fn, pattern", [
    (lambda x: 1.0, "or a tuple of Tensors; it is float 1.0"),
    (lambda x: None, "it is NoneType None"),
    (lambda x: x.numpy(), "it is ndarray"),
    (lambda x: (x * 2, 1.0), "output 1 of 2 is float 1.0"),
])
def test_gradcheck_says_when_fn_returns_no_tensor(fn, pattern):
    with pytest.raises(TypeError, match=f"gradcheck: fn must return a Tensor.*{pattern}"):
        ma.gradcheck(fn, (f64(3),))  # was "need at least one array to concatenate"


def test_gradcheck_needs_a_float_output():
    with pytest.raises(TypeError, match=r"gradcheck: fn returned no floating-point tensor, only "
                                        r"bool tensor of shape \(3,\) on cpu"):
        ma.gradcheck(lambda x: x > 0, (f64(3),))


def test_gradcheck_names_the_inputs_when_none_requires_grad(torch):
    with pytest.raises(ValueError, match="requires_grad=True"):
        torch.autograd.gradcheck(lambda i: i * 2, (torch.tensor([1, 2, 3]),))
    with pytest.raises(ValueError, match=r"no input has requires_grad=True \(got int64 tensor of "
                                         r"shape \(3,\) on cpu, float64 tensor of shape \(2,\) "
                                         r"on cpu\)"):
        ma.gradcheck(lambda i, x: x * 2, (ma.tensor([1, 2, 3]), f64(2, requires_grad=False)))


def test_gradcheck_passes_integer_inputs_through(torch):
    index = [2, 0, 1]
    assert torch.autograd.gradcheck(lambda x, i: x[i] * i, (
        torch.randn(3, dtype=torch.float64, requires_grad=True), torch.tensor(index)))
    assert ma.gradcheck(lambda x, i: x[i] * i, (f64(3), ma.tensor(index)))


@pytest.mark.parametrize("fn, shape", [(lambda x: x[:0], (3,)), (lambda x: x * 2, (0,))])
def test_gradcheck_of_an_empty_input_or_output_passes_as_in_pytorch(fn, shape, torch):
    assert torch.autograd.gradcheck(fn, (torch.zeros(shape, dtype=torch.float64,
                                                      requires_grad=True),))
    assert ma.gradcheck(fn, (ma.zeros(*shape, dtype="float64", requires_grad=True),))


def test_gradcheck_checks_fn_and_eps():
    with pytest.raises(TypeError, match="gradcheck: fn must be a function of the inputs, got int"):
        ma.gradcheck(3, (f64(3),))
    with pytest.raises(ValueError, match="gradcheck: eps must be a positive step size, got 0"):
        ma.gradcheck(lambda x: x * 2, (f64(3),), eps=0)  # was a GradcheckError about NaN


@pytest.mark.parametrize("make, match", [
    (lambda p: ma.optim.Adam(p, betas=(0.9,)), "betas must be a pair"),
    (lambda p: ma.optim.Adam(p, betas=0.9), "betas must be a pair"),
    (lambda p: ma.optim.AdamW([{"params": p, "betas": "ab"}]), "betas must be a pair"),
    (lambda p: ma.optim.SGD(p, lr="a"), "lr must be a finite number, got 'a'"),
    (lambda p: ma.optim.SGD(p, lr=float("nan")), "lr must be a finite number"),
    (lambda p: ma.optim.Adam(p, eps=None), "eps must be a finite number, got None"),
])
def test_optimizer_settings_of_the_wrong_kind_are_a_type_error(make, match):
    params = [ma.tensor([1.0, 2.0], requires_grad=True)]
    with pytest.raises(TypeError, match=match):
        make(params)
