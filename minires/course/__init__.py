"""The teaching side of the notebooks in ``tutorials/``: a student edition, a grader, a rendered book.

``minires course build --out DIR`` writes the student edition, ``minires course grade PATH`` runs a
submitted notebook and scores each exercise, ``minires course book --out DIR`` executes the
tutorials and writes them as static HTML with an index page.

Neither destroys work nor passes unchecked: ``build`` refuses to write into the course's own folder
and to replace a student notebook edited since it was built (``--force`` replaces it); each student
notebook records the course notebook it came from in ``metadata["minires"]``. ``grade`` runs the
course's checks, finding the course notebook by that record, by the exercises the submission has and
by its file name (so a renamed file is still graded officially); it refuses when none matches, and
grades by the submission's own checks only with ``--own-checks``, saying so in its report.

Conventions in the source notebooks (the instructor edition, the one in ``tutorials/``)
-------------------------------------------------------------------------------------
Cell tags (Jupyter: View > Right Sidebar > Cell Tags; stored in ``cell.metadata.tags``):

``exercise:NN.K``
    A graded code cell, named ``NN.K`` (notebook number, exercise number; the name is stable: the
    grader reports by it). Its source holds one solution region::

        # hints and comments may come first; no code
        ### BEGIN SOLUTION
        ...the instructor's solution...
        ### END SOLUTION
        ...the check: asserts that pass only when the solution is right...

    The region comes first (only comments and blank lines before it), so the student's stub raises
    before anything else in the cell runs. The student edition keeps the markers and the check and
    replaces the region's body with ``raise NotImplementedError(...)``. Put whatever an exercise
    needs from the notebook (data, models) in the cells *before* it, not above its region.
    ``build`` refuses a code cell that has the markers but no exercise tag (a mistyped tag): its
    solution would reach the students.
``check``
    A code cell that checks a claim stated in the text (it must execute at least one ``assert``).
    Exercise cells are checks too and are not tagged ``check`` again.
``instructor``
    A markdown cell for the teacher (how long the notebook takes, what students get wrong). The
    student edition and the book leave it out.

``tutorials/course.json`` records, per notebook, its exercise names and its number of ``check``
cells; the tests compare the tags with it, so deleting a check (or an exercise) fails a test. A
notebook without exercises has ``"exercises": []``. A new notebook gets a line there::

    "10_double_backward": {"exercises": [], "checks": 4}
"""
from .editions import (BEGIN_SOLUTION, END_SOLUTION, EXERCISE_TAG, CHECK_TAG, INSTRUCTOR_TAG,  # noqa: F401
                       CourseFormatError, EditionError, NotebookFileError, exercise_name, student_edition, student_source,
                       build_student_edition)
from .commands import add_arguments, run  # noqa: F401
