"""The map's walls against the player's square box: which walls cross it, which places are free, and the wall a
box runs into."""

import numpy as np

from worldsim.world.walls import Walls


def test_a_wall_crossing_or_touching_the_box_holds_it_and_one_beside_it_does_not():
    walls = Walls(np.array([[100.0, 0.0, 100.0, 200.0]]))  # a wall along x = 100
    free = walls.clear(np.array([[80.0, 50.0], [84.0, 50.0], [85.0, 50.0], [120.0, 50.0], [100.0, 230.0]]))
    # 20 units off: free; exactly 16: touching; 15: crossing; the far side: free; beyond its end: free
    assert free.tolist() == [True, False, False, True, True]


def test_a_diagonal_wall_holds_a_box_its_corner_reaches():
    walls = Walls(np.array([[0.0, 100.0, 100.0, 0.0]]))  # x + y = 100
    # the box's top-right corner sits at x + y = centre + 32
    assert walls.clear(np.array([[33.0, 33.0]]))[0]
    assert not walls.clear(np.array([[35.0, 35.0]]))[0]


def test_ignored_walls_do_not_count():
    walls = Walls(np.array([[100.0, 0.0, 100.0, 200.0], [0.0, 60.0, 200.0, 60.0]]))
    point = np.array([[90.0, 50.0]])
    assert not walls.clear(point)[0]
    assert not walls.clear(point, ignore=np.array([0]))[0]  # the other wall still holds it
    assert walls.clear(point, ignore=np.array([0, 1]))[0]


def test_the_direction_of_the_wall_run_into_and_none_in_a_corner():
    walls = Walls(np.array([[100.0, 0.0, 100.0, 200.0], [0.0, 200.0, 100.0, 200.0]]))
    np.testing.assert_allclose(np.abs(walls.direction(np.array([90.0, 50.0]))), [0.0, 1.0])
    assert walls.direction(np.array([90.0, 190.0])) is None  # both walls: a corner
    assert walls.direction(np.array([50.0, 50.0])) is None  # none


def test_round_trip_through_tensors():
    walls = Walls(np.array([[1.5, 2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(Walls.from_tensors(walls.to_tensors()).segments, walls.segments)
