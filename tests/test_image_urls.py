"""The one check of an input image URL (`providers.urls.image_url_problem`), pure and offline."""

from __future__ import annotations

import socket

import pytest

from providers.urls import image_url_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/me.png",
        "https://example.co.uk/me.png",
        "https://someone.github.io/me.png",
        "https://dnznrvs05pmza.cloudfront.net/a.png?x=1",
        "https://images.example.com:443/me.png",
        "https://IMAGES.Example.COM/me.png",
    ],
)
def test_a_public_https_name_is_accepted(url):
    assert image_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example.com/me.png",  # not https
        "ftp://images.example.com/me.png",
        "https:///me.png",
        "not a url",
        "https://user:pw@images.example.com/me.png",
        "https://images.example.com:8443/me.png",
        "https://10.0.0.1/me.png",  # IP literals in every notation
        "https://2130706433/me.png",
        "https://127.1/me.png",
        "https://0x7f000001/me.png",
        "https://0177.0.0.1/me.png",
        "https://0x7f.0.0.1/me.png",
        "https://[::1]/me.png",
        "https://[::ffff:169.254.169.254]/me.png",
        "https://localhost/me.png",  # internal names
        "https://localhost./me.png",
        "https://metadata.google.internal/me.png",
        "https://printer.local/me.png",
        "https://intranet/me.png",
        "https://x.example/me.png",  # no public suffix
        "https://co.uk/me.png",  # a bare public suffix
        "https://169.254.169.254.nip.io/me.png",  # names that stand for an IP address
        "https://app-127-0-0-1.sslip.io/me.png",
        "https://7f000001.nip.io/me.png",
        "https://10.0.0.1.example.com/me.png",
        "https://anything.localtest.me/me.png",
        "https://%6c%6fcalhost/me.png",  # not a plain name
        "https://exa_mple.com/me.png",
    ],
)
def test_anything_but_a_public_https_name_is_refused(url):
    assert image_url_problem(url) is not None


def test_an_allow_list_admits_only_its_hosts_and_subdomains():
    allowed = ("images.example.com", ".cdn.example.org")
    assert image_url_problem("https://images.example.com/a.png", allowed) is None
    assert image_url_problem("https://eu.cdn.example.org/a.png", allowed) is None
    assert "IMAGE_URL_HOSTS" in image_url_problem("https://cdn.example.org.evil.com/a.png", allowed)
    assert "IMAGE_URL_HOSTS" in image_url_problem("https://example.com/a.png", allowed)


def test_an_allow_list_never_admits_an_internal_name():
    assert image_url_problem("https://localhost/a.png", ("localhost",)) is not None


def test_the_check_works_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the public suffix list must not be fetched")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert image_url_problem("https://images.example.net/me.png") is None
