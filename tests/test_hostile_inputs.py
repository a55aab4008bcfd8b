"""Hostile images and requests through the handler in-process (issue 11); the same bytes go through a
real MMS in test_robustness.py. Every builder is in hostile.py: the bytes are made by the test."""

from __future__ import annotations

import os

import hostile
import images
import pytest
from harness import raw

GOOD = images.jpeg(320, 240, 61)

# name -> (body, status, a word the message must contain)
REFUSED = {
    "dds_unknown_pixel_format": (hostile.dds_unknown_pixel_format(), 400, "NotImplementedError"),
    "blp_unknown_encoding": (hostile.blp_unknown_encoding(), 400, "BLP"),
    "avif_corrupt_planes": (hostile.avif_corrupt_planes(), 400, "decode"),
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
def test_an_exotic_decoder_error_fails_only_its_request_in_a_batch_of_eight(service, name):
    bodies = [images.jpeg(320, 240, seed) for seed in range(62, 69)]
    bodies.insert(3, REFUSED[name][0])
    answers = service.predict([raw(body) for body in bodies])
    assert [answer.status for answer in answers] == [200, 200, 200, 400, 200, 200, 200, 200]


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
    """handle(None, ...) sets MMS_DECODE_INPUT_REQUEST=false in its own process: MMS's worker reads it
    for every request, so JSON and text bodies reach the handler as bytes on any server."""
    assert os.environ["MMS_DECODE_INPUT_REQUEST"] == "false"
