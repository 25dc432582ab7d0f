"""The gallery of every lesson widget (what the browser test drives), checked without a browser."""

import pytest

from tools.widget_gallery import course_widgets, make_move, status_text
from vaecourse.run_course import course_notebooks


@pytest.fixture(scope="module")
def gallery():
    return course_widgets()


def test_every_lesson_has_its_widgets_in_the_gallery(gallery):
    lessons = {item.lesson for item in gallery}
    missing = [nb.stem for nb in course_notebooks() if nb.stem not in lessons]
    assert not missing, f"no widget of {missing} in tools.widget_gallery: add the lesson's builder there"
    assert all(item.moves for item in gallery), "every gallery widget needs at least one move to test"


def test_each_move_redraws_and_reports_its_value(gallery):
    for item in gallery:
        for move in item.moves:
            before = item.live.image.value
            make_move(item, move)
            where = f"{item.lesson} / {item.name} / {move.control}"
            assert status_text(item, move) in item.live.status.value, where
            assert item.live.image.value != before, f"{where}: the status changed but the image did not"
            assert item.live.last_decode_ms > 0, where
