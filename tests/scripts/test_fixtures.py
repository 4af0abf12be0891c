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

    def test_committed_history_fixtures_match_the_generator(self):
        import os
        expected = make_fixtures.history_fixtures()
        on_disk = []
        for root, _, files in os.walk(fixture("history")):
            on_disk += [os.path.relpath(os.path.join(root, f), fixture("history")) for f in files]
        self.assertEqual(sorted(on_disk), sorted(expected))
        for name, data in expected.items():
            with open(fixture(os.path.join("history", name)), encoding="utf-8") as f:
                self.assertEqual(json.load(f), json.loads(json.dumps(data)), name)


if __name__ == "__main__":
    unittest.main()
