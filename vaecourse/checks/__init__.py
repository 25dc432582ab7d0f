"""The checks that follow the lessons' exercises: each runs the student's code on a fixed input, compares it
with the package's function or a closed form, and when it is wrong says what (shape, value, gradient) with a
hint. A failed check raises ``ExerciseFailed`` (an AssertionError); a passed one prints one line.

One module per part of the course; a notebook calls them as ``checks.check_…`` from this package.
"""

from .ccvae import *  # noqa: F401,F403  (lesson 05)
from .common import ExerciseFailed  # noqa: F401
from .csvae import *  # noqa: F401,F403  (lesson 07)
from .elbo import *  # noqa: F401,F403  (lessons 01, 02)
from .introvac import *  # noqa: F401,F403  (lesson 06)
from .trade_offs import *  # noqa: F401,F403  (lessons 03, 04, 04b)
