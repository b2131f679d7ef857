import pytest
import torch

from polyspeech.ctc.precision import resolve_precision
from polyspeech.devices import check_device, resolve_device
from polyspeech.errors import InputError

HERE = "cuda" if torch.cuda.is_available() else "cpu"


def test_auto_is_cuda_where_present_else_the_cpu():
    assert resolve_device("auto") == torch.device(HERE)
    assert check_device("auto") == HERE  # what the command line passes on
    assert check_device("cpu") == "cpu"


def test_auto_precision_follows_the_device_auto_picks():
    assert resolve_precision("auto", "auto") == resolve_precision("auto", HERE)


@pytest.mark.parametrize("name", ["tpu", "gpu0"])
def test_a_device_name_that_is_none_of_them_lists_auto_too(name):
    with pytest.raises(InputError, match=f"device '{name}'.*use auto, cpu, cuda or cuda:N"):
        resolve_device(name)
