import pytest

from edgekit.errors import EdgekitError
from edgekit.registry import ALIASES, VARIANTS, agrees_with_paper, get_variant, parse_resolution


def test_registry_names_cover_the_issue():
    expected = {f"b{i}-seg-cityscapes" for i in range(4)} | {f"b{i}-seg-ade20k" for i in (1, 2, 3)}
    expected |= {f"b{i}-cls" for i in range(4)} | {f"m{i}-cls" for i in range(6)}
    expected |= {"l1-cls", "l2-cls", "l3-cls", "l1-seg-cityscapes", "l2-seg-cityscapes", "l1-seg-ade20k",
                 "l2-seg-ade20k"}  # the authors' zoo: no L3 segmentation model
    expected |= {"sr-x2", "sr-x2-w0.75"}  # the high-resolution paper's Table 7 rows (edgekit's own design)
    assert set(VARIANTS) == expected
    assert "b0-seg-ade20k" not in VARIANTS  # the paper has no B0 ADE20K model


def test_aliases():
    assert get_variant("b0-seg").name == "b0-seg-cityscapes"
    assert get_variant(" B1-SEG ").name == "b1-seg-cityscapes"
    assert all(target in VARIANTS for target in ALIASES.values())


def test_classes_and_resolution():
    assert get_variant("b0-seg").num_classes == 19
    assert get_variant("b3-seg-ade20k").num_classes == 150
    assert get_variant("m3-cls").num_classes == 1000
    assert get_variant("b2-seg-ade20k").resolution == (512, 512)
    assert get_variant("b2-seg").resolution == (1024, 2048)


def test_unknown_variant_suggests_close_names():
    with pytest.raises(EdgekitError, match=r"unknown variant 'b0-sg'.*b0-seg"):
        get_variant("b0-sg")
    with pytest.raises(EdgekitError, match="m1-cls"):
        get_variant("m1-cl")


@pytest.mark.parametrize(
    "text,expected",
    [(None, (1024, 2048)), ("512x1024", (512, 1024)), ("224", (224, 224)), ("64X96", (64, 96))],
)
def test_parse_resolution(text, expected):
    assert parse_resolution(text, get_variant("b0-seg")) == expected


@pytest.mark.parametrize(
    "text,message",
    [("100", "multiple of 32"), ("0x64", "positive"), ("-32", "positive"), ("abc", "HxW"), ("1x2x3", "HxW")],
)
def test_bad_resolution(text, message):
    with pytest.raises(EdgekitError, match=message):
        parse_resolution(text, get_variant("b0-seg"))


def test_paper_agreement_respects_printed_precision():
    assert agrees_with_paper(15.32, "15", 0.02)  # printed "15" covers 14.5-15.5
    assert not agrees_with_paper(15.6, "15", 0.02)
    assert agrees_with_paper(0.707, "0.7", 0.02)
    assert not agrees_with_paper(0.76, "0.7", 0.02)
    assert agrees_with_paper(4.39, "4.4", 0.05)
    assert not agrees_with_paper(4.0, "4.4", 0.05)
