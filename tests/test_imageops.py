"""A1111's img2img picture handling (inference/imageops.py): resize modes, masks, crop boxes, fill and overlay."""

import numpy as np
import pytest
from PIL import Image

from inference.imageops import apply_overlay
from inference.imageops import binary_mask
from inference.imageops import blur_mask
from inference.imageops import crop_region
from inference.imageops import expand_crop_region
from inference.imageops import fill
from inference.imageops import flatten
from inference.imageops import latent_mask
from inference.imageops import prepare_img2img
from inference.imageops import resize_image


def stripes(width=96, height=48):
    """Red left half, blue right half, a green top row and a yellow bottom row: every edge is told apart."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    pixels[0] = (0, 255, 0)
    pixels[-1] = (255, 255, 0)
    return Image.fromarray(pixels)


def square_mask(size=(64, 64), box=(16, 16, 48, 48)):
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_every_resize_mode_gives_the_asked_size(mode):
    assert resize_image(mode, stripes(96, 48), 64, 64).size == (64, 64)
    assert resize_image(mode, stripes(48, 96), 96, 64).size == (96, 64)


def test_just_resize_stretches_the_whole_picture():
    out = np.asarray(resize_image(0, stripes(96, 48), 64, 64))
    assert tuple(out[32, 5]) == (255, 0, 0) and tuple(out[32, 58]) == (0, 0, 255)
    assert out[0, 32, 1] > 150 and out[-1, 32, 0] > 150  # the green top and yellow bottom rows are still there


def test_crop_and_resize_covers_the_frame_and_crops_the_sides():
    # a 96x48 picture into 64x64: scaled to 128x64, 32 pixels cropped from each side; top and bottom rows stay
    out = np.asarray(resize_image(1, stripes(96, 48), 64, 64)).astype(int)
    assert out[0, 32, 1] > 150  # green top row kept
    assert tuple(out[32, 0]) == (255, 0, 0) and tuple(out[32, 63]) == (0, 0, 255)


def test_resize_and_fill_fits_inside_and_fills_the_bars_with_the_edge_rows():
    # a 96x48 picture into 64x64: scaled to 64x32 in the middle, bars of 16 rows above and below
    out = np.asarray(resize_image(2, stripes(96, 48), 64, 64)).astype(int)
    assert out[5, 10, 1] > 150 and out[5, 10, 2] < 100  # the top bar repeats the green top row
    assert out[58, 10, 0] > 150 and out[58, 10, 1] > 150  # the bottom bar repeats the yellow bottom row
    assert tuple(out[32, 5]) == (255, 0, 0) and tuple(out[32, 60]) == (0, 0, 255)


def test_transparency_is_flattened_onto_white():
    picture = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    picture.putpixel((0, 0), (0, 0, 255, 255))
    out = flatten(picture)
    assert out.mode == "RGB" and out.getpixel((4, 4)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)


def test_a_mask_is_read_by_its_alpha_when_it_has_one_else_by_its_grey():
    grey = Image.new("RGB", (4, 4), (200, 200, 200))
    assert binary_mask(grey).getpixel((0, 0)) == 200
    alpha = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    alpha.putpixel((1, 1), (0, 0, 0, 200))
    read = binary_mask(alpha)
    assert read.getpixel((1, 1)) == 255 and read.getpixel((0, 0)) == 0  # rounded at 128, as A1111 does


def test_mask_blur_is_a_symmetric_gaussian_of_a1111s_width():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    row = np.asarray(blur_mask(mask, 4)).astype(int)[10]
    assert row[0] == 0 and row[63] == 255
    assert 110 <= row[31] <= 120 and row[31] + row[32] == 255  # just under half way at the edge, symmetric about it
    assert row[21] == 0 and row[22] > 0  # A1111's kernel reaches 2 * int(2.5 * 4 + 0.5) / 2 = 10 pixels
    assert np.array_equal(np.asarray(blur_mask(mask, 0)), np.asarray(mask))


def test_crop_box_padding_and_aspect():
    mask = square_mask((100, 80), (40, 30, 50, 40))
    assert crop_region(mask) == (40, 30, 50, 40)
    assert crop_region(mask, 8) == (32, 22, 58, 48)
    assert crop_region(Image.new("L", (8, 8), 0)) is None
    # a 26x26 box painted at 64x32 grows to twice as wide as high, inside the picture
    x1, y1, x2, y2 = expand_crop_region((32, 22, 58, 48), 64, 32, 100, 80)
    assert (x2 - x1, y2 - y1) == (52, 26) and x1 >= 0 and x2 <= 100
    assert expand_crop_region((0, 0, 10, 40), 64, 64, 100, 80)[0] == 0  # kept inside at the left edge


def test_fill_changes_only_the_masked_part_to_the_colours_around_it():
    picture = stripes(64, 64)
    mask = square_mask((64, 64), (0, 16, 24, 48))  # inside the red half
    out = np.asarray(fill(picture, mask)).astype(int)
    source = np.asarray(picture).astype(int)
    assert np.array_equal(out[:, 40:], source[:, 40:])
    assert out[32, 4, 0] > 150 and out[32, 4, 2] < 100  # filled with red from around it


def test_overlay_keeps_every_unmasked_pixel_exactly():
    source = stripes(64, 64)
    painted = Image.new("RGB", (64, 64), (10, 200, 10))
    prepared = prepare_img2img(source, square_mask(), 64, 64, mask_blur=0, inpaint_full_res=False)
    out = np.asarray(apply_overlay(painted, prepared.paste_to, prepared.overlay)).astype(int)
    inside = np.zeros((64, 64), bool)
    inside[16:48, 16:48] = True
    assert np.array_equal(out[~inside], np.asarray(source).astype(int)[~inside])
    assert np.all(out[inside] == (10, 200, 10))


def test_only_masked_paints_the_masks_box_at_full_size_and_keeps_the_init_pictures_size():
    source = stripes(96, 48)
    mask = square_mask((96, 48), (40, 10, 56, 26))
    prepared = prepare_img2img(source, mask, 64, 64, mask_blur=0, inpaint_full_res=True,
                               inpaint_full_res_padding=4)
    assert prepared.image.size == (64, 64) and prepared.mask.size == (64, 64)
    x, y, width, height = prepared.paste_to
    assert width == height and (x, y) <= (36, 6) and x + width >= 60 and y + height >= 30  # square, around the box
    out = apply_overlay(Image.new("RGB", (64, 64), (10, 200, 10)), prepared.paste_to, prepared.overlay)
    assert out.size == (96, 48)
    assert out.getpixel((48, 18)) == (10, 200, 10) and out.getpixel((5, 40)) == (255, 0, 0)


def test_an_empty_mask_with_only_masked_paints_the_whole_picture_and_says_so():
    prepared = prepare_img2img(stripes(), Image.new("L", (96, 48), 0), 64, 64)
    assert prepared.mask is None and prepared.overlay is None and prepared.image.size == (64, 64)
    assert "the mask is empty" in prepared.notes[0]


def test_inverted_masks_and_masks_of_another_size():
    prepared = prepare_img2img(stripes(64, 64), square_mask((32, 32), (8, 8, 24, 24)), 64, 64, mask_blur=0,
                               inpaint_full_res=False, inpainting_mask_invert=1)
    assert "mask resized from 32x32" in prepared.notes[0]
    values = np.asarray(prepared.mask)
    assert values[32, 32] == 0 and values[2, 2] == 255


def test_latent_upscale_keeps_the_picture_for_the_latents_and_the_latent_mask_is_rounded():
    prepared = prepare_img2img(stripes(96, 48), None, 64, 64, resize_mode=3)
    assert prepared.latent_upscale and prepared.image.size == (96, 48)
    small = latent_mask(square_mask(), 8, 8)
    assert small.shape == (8, 8) and set(np.unique(small)) == {0.0, 1.0} and small[4, 4] == 1 and small[0, 0] == 0
