"""A credential's resync bucket (metrics_app.stream.catchup): asks running at once share it."""

from typing import Any

from metrics_app.stream.catchup import CatchUp


def test_asks_at_once_share_the_bucket_and_get_back_what_they_did_not_spend(settings: Any) -> None:
    settings.METRICS_RESYNC_MAX_RECORDS = 1000
    catch_up = CatchUp()
    first = catch_up.budget("key:1")
    second = catch_up.budget("key:1")  # while the first still reads: not another 1,000
    other = catch_up.budget("key:2")
    assert (first.left, second.left, other.left) == (1000, 0, 1000)
    first.take(300)
    catch_up.refund("key:1", first)
    assert 700 <= catch_up.budget("key:1").left < 710  # what the first did not spend (and a refill)
