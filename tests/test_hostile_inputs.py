"""Hostile images and requests through the handler in-process (issue 11); the same bytes go through a
real MMS in test_robustness.py. Every builder is in hostile.py: the bytes are made by the test."""

from __future__ import annotations

import os

import pytest

import hostile
import hostile_images
import images
from harness import raw

GOOD = images.jpeg(320, 240, 61)

# name -> (body, status, a word the message must contain)
REFUSED = {
    # Formats outside the accepted list are never opened: their decoders raised NotImplementedError,
    # BLPFormatError, RuntimeError (400 before); now 415 naming the format and the accepted ones.
    "dds_unknown_pixel_format": (hostile.dds_unknown_pixel_format(), 415, "DDS"),
    "blp_unknown_encoding": (hostile.blp_unknown_encoding(), 415, "BLP"),
    "avif_corrupt_planes": (hostile.avif_corrupt_planes(), 415, "AVIF"),
    "progressive_jpeg_20000_scans": (hostile.progressive_jpeg_scan_bomb(), 413, "scans"),
    "png_1x40000000_16bit_one_row": (hostile.png_16bit_strip_one_row(), 413, "a side"),
    "png_6324x6324_one_row": (hostile.png_square_one_row(), 400, "truncated"),
    "text_with_utf8_bom": (hostile.text_with_bom(), 415, "text"),
    "svg_with_utf8_bom": (hostile.svg_with_bom(), 415, "SVG"),
    "text_utf16": (hostile.utf16_text(), 415, "text"),
}
DECODED = {"xpm": hostile.xpm(), "ascii_ppm": hostile.ascii_ppm()}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_bytes_get_their_own_4xx(service, name):
    body, status, word = REFUSED[name]
    [answer] = service.predict([raw(body)])
    assert answer.status == status, answer.body
    assert answer.json["code"] == status and word.lower() in answer.json["message"].lower(), answer.body


@pytest.mark.parametrize("name", ["dds_unknown_pixel_format", "blp_unknown_encoding", "avif_corrupt_planes"])
def test_an_exotic_format_fails_only_its_request_in_a_batch_of_eight(service, name):
    bodies = [images.jpeg(320, 240, seed) for seed in range(62, 69)]
    bodies.insert(3, REFUSED[name][0])
    answers = service.predict([raw(body) for body in bodies])
    assert [answer.status for answer in answers] == [200, 200, 200, 415, 200, 200, 200, 200]


# Decode bombs (issue 20 items 8 and 10, issue 19 item 3): small files that cost a worker most of a
# gigabyte, or seconds of CPU, refused from their headers whatever the memory budget (built when
# their test runs; tests/test_decode_memory.py measures the peak of each in a child process).
# name -> (builder, status, a word the message must contain)
DECODE_BOMBS = {
    "tiff_64x64_in_one_32768x32768_tile": (hostile_images.tiff_one_huge_tile, 413, "memory budget"),
    "webp_38_bytes_of_6300x6300": (hostile_images.webp_flat, 413, "memory budget"),
    "ico_holding_a_13000x13000_png": (hostile_images.ico_holding_png, 415, "ICO"),
    "icns_holding_a_13000x13000_png": (hostile_images.icns_holding_png, 415, "ICNS"),
    "jpeg_20mb_of_markers": (hostile_images.jpeg_many_markers, 413, "segments before its image data"),
    "jpeg_20mb_of_junk_between_segments": (hostile_images.jpeg_junk_between_segments, 400, "no marker"),
    "jpeg_100_scans_of_40_megapixels": (
        lambda: hostile.progressive_jpeg_scan_bomb(side=6324, repeats=88),
        413,
        "the limit is 25 at its size",
    ),
    "png_20mb_of_chunks": (hostile_images.png_many_chunks, 413, "over 25000 chunks"),
    "png_20mb_of_idat_chunks": (hostile_images.png_many_idat_chunks, 413, "over 25000 chunks"),
    "png_80mb_of_text_in_86kb": (hostile_images.png_text_bomb, 400, "text chunks"),
    "gif_20mb_of_extensions": (hostile_images.gif_many_extensions, 413, "extension blocks"),
    "gif_20mb_comment_of_tiny_blocks": (hostile_images.gif_comment_of_tiny_blocks, 413, "extension blocks"),
    "gif_frame_growing_the_canvas": (hostile_images.gif_canvas_from_frame, 413, "pixels"),
    "tiff_a_million_strips": (hostile_images.tiff_many_strips, 413, "strips or tiles"),
    "bmp_rle4_40_megapixels": (hostile_images.bmp_rle4_runs, 413, "decodes it in Python"),
    "pgm_ascii_9_megapixels": (hostile_images.ascii_pgm, 413, "decodes it in Python"),
    "xpm_8_megapixels": (hostile_images.xpm_large, 413, "decodes it in Python"),
    "ppm_16bit_3_megapixels": (hostile_images.ppm_16bit, 413, "decodes it in Python"),
}


@pytest.mark.parametrize("name", list(DECODE_BOMBS))
def test_a_decode_bomb_is_refused_from_its_header(service, name):
    build, status, word = DECODE_BOMBS[name]
    [answer] = service.predict([raw(build())])
    assert answer.status == status, answer.body
    assert word.lower() in answer.json["message"].lower(), answer.body


def test_a_strip_taller_than_the_image_is_not_a_bomb(service):
    """libtiff clamps a strip to the image's height: a 64 x 64 TIFF whose one strip declares a
    million rows costs nothing, and is answered."""
    [answer] = service.predict([raw(hostile_images.tiff_one_huge_strip())])
    assert answer.status == 200, answer.body


def test_a_motion_photos_video_after_the_jpeg_is_not_counted_as_scans(service):
    """Bytes after a JPEG's end (a motion photo's video, another MPO picture) are not decoded: their
    0xFFDA pairs are no scans. 300 of them used to make a camera's photo a 413."""
    photo = images.jpeg(640, 480, 64)
    [answer] = service.predict([raw(photo + b"\x00\x00\xff\xda\x00\x08" * 300)])
    assert answer.status == 200, answer.body


def test_an_unaccepted_format_is_named_with_the_accepted_ones(service):
    [answer] = service.predict([raw(hostile_images.ico_holding_png(64))])
    assert answer.status == 415
    assert answer.json["message"] == (
        "the body is an image in a format the service does not accept (ICO (Windows icon)); "
        "the accepted formats are JPEG, PNG, GIF, BMP, TIFF, WebP, XPM, PBM/PGM/PPM or XBM"
    )


@pytest.mark.parametrize("name", sorted(DECODED))
def test_text_based_image_formats_are_images(service, name):
    [answer] = service.predict([raw(DECODED[name])])
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("topk", ["٣", "1_0", "+3", "3.0", " ", "99999999999999999999"])
def test_topk_takes_ascii_digits_only(service, topk):
    [answer] = service.predict([dict(raw(GOOD), topk=topk.encode())])
    assert answer.status == 400 and "topk" in answer.json["message"]


def test_a_request_with_5000_fields_gets_a_short_error(service):
    request = {f"field{i:04d}": bytearray(b"x") for i in range(5000)}
    [answer] = service.predict([request])
    assert answer.status == 400
    assert len(answer.body) < 1000
    assert "and 4990 more" in answer.json["message"]


def test_loading_makes_the_worker_take_raw_bodies(service):
    """handle(None, ...) sets MMS_DECODE_INPUT_REQUEST=false and TS_DECODE_INPUT_REQUEST=false in its own
    process: MMS's and TorchServe's workers read them for every request, so JSON and text bodies reach
    the handler as bytes on any server."""
    assert os.environ["MMS_DECODE_INPUT_REQUEST"] == "false"
    assert os.environ["TS_DECODE_INPUT_REQUEST"] == "false"
