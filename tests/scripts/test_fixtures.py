"""The golden fixtures are exactly what make_fixtures.py writes."""

import json
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture
import make_fixtures


class Fixtures(unittest.TestCase):
    def test_committed_fixtures_match_the_generator(self):
        # Compared as canonical text: raw_bench.json holds NaN, which equals nothing, not even itself.
        def canonical(value):
            return json.dumps(value, sort_keys=True)
        for name, data in make_fixtures.fixtures().items():
            with open(fixture(name), encoding="utf-8") as f:
                self.assertEqual(canonical(json.load(f)), canonical(json.loads(json.dumps(data))), name)


if __name__ == "__main__":
    unittest.main()
