"""The argparse value checks every cloakbench command shares, so a bad value gets one wording."""

import argparse
import re


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def count(text):
    """A whole number, 0 or more (a count that may be none, or a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def odd_repetitions(text):
    value = positive_int(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(
            "must be odd (Google Benchmark 1.7.1 computes the median of an even count wrongly), "
            "got %d" % value)
    return value


def seconds(text):
    """A --min-time: above 0 and at most 60 seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of seconds: %r" % text) from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError("must be above 0 and at most 60 seconds")
    return value


def cpu(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a CPU number: %r" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def regex(text):
    try:
        re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError("not a valid regular expression: %s" % e) from None
    return text


def fraction(text, allow_zero=False):
    """A share such as a minimum effect: in (0, 1), or [0, 1) with allow_zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if not (0.0 <= value if allow_zero else 0.0 < value) or not value < 1.0:
        raise argparse.ArgumentTypeError("must be a fraction in %s, e.g. 0.05 for 5%%"
                                         % ("[0, 1)" if allow_zero else "(0, 1)"))
    return value


def fraction_or_zero(text):
    return fraction(text, allow_zero=True)
