"""The text spec parser shared by the CLI, the batch config and the UI."""

import pytest

from hac.core.specs import ComponentSpec, format_spec, parse_chain, parse_spec, parse_value


@pytest.mark.parametrize(
    "text, expected",
    [("25", 25), ("0.5", 0.5), ("4/255", 4 / 255), ("true", True), ("off", False), ("mse", "mse"), ("ms-ssim", "ms-ssim")],
)
def test_values(text, expected):
    assert parse_value(text) == expected


def test_spec_and_chain():
    assert parse_spec("jpeg:q=25") == ComponentSpec("jpeg", {"q": 25})
    assert parse_spec(" pgd : eps=4/255 , steps=10 ") == ComponentSpec("pgd", {"eps": 4 / 255, "steps": 10})
    assert parse_spec("webp") == ComponentSpec("webp", {})
    assert parse_chain("jpeg:q=50+webp:q=80") == [ComponentSpec("jpeg", {"q": 50}), ComponentSpec("webp", {"q": 80})]
    assert format_spec(parse_spec("jpeg:subsampling=0,q=5")) == "jpeg:q=5,subsampling=0"


@pytest.mark.parametrize(
    "text, message",
    [(":q=1", "empty component name"), ("jpeg:q", "not of the form key=value"), ("jpeg:q=1,q=2", "given twice")],
)
def test_bad_specs(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


@pytest.mark.parametrize("text", ["", "jpeg+", "+jpeg", "jpeg++webp"])
def test_bad_chains(text):
    with pytest.raises(ValueError, match="invalid codec chain"):
        parse_chain(text)
