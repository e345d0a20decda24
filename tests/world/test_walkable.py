"""The walkable area learned from recorded positions: what it contains, and moves that stop or slide at its edge."""

import numpy as np

from worldsim.world.walkable import WalkableMap


def room(low, high, step=4.0):
    xs = np.arange(low[0], high[0], step)
    ys = np.arange(low[1], high[1], step)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def test_contains_the_recorded_area_and_nothing_far_from_it():
    walkable = WalkableMap.fit(room((0, 0), (100, 100)), cell=8.0)
    assert walkable.contains(np.array([[50.0, 50.0], [5.0, 95.0]])).all()
    assert not walkable.contains(np.array([[150.0, 50.0], [50.0, -30.0], [1e6, 0.0]])).any()


def test_small_enclosed_gaps_between_paths_become_floor_but_the_outside_does_not():
    points = np.concatenate([room((0, 0), (100, 100))])
    keep = ~((np.abs(points[:, 0] - 50) < 20) & (np.abs(points[:, 1] - 50) < 20))  # a 40x40 hole in the middle
    assert WalkableMap.fit(points[keep], cell=8.0, max_hole=64).contains(np.array([50.0, 50.0]))
    assert not WalkableMap.fit(points[keep], cell=8.0, max_hole=0).contains(np.array([50.0, 50.0]))


def test_moves_stop_at_the_edge_and_slide_along_it():
    walkable = WalkableMap.fit(room((0, 0), (100, 100)), cell=8.0)
    xy, blocked = walkable.move(np.array([50.0, 50.0]), np.array([5.0, 3.0]))
    np.testing.assert_allclose(xy, [55.0, 53.0])
    assert not blocked.any()
    xy, blocked = walkable.move(np.array([95.0, 50.0]), np.array([40.0, 6.0]))  # into the east wall, at an angle
    np.testing.assert_allclose(xy, [95.0, 56.0])  # slid north along it
    assert blocked.tolist() == [True, False]
    xy, blocked = walkable.move(np.array([95.0, 50.0]), np.array([40.0, 0.0]))  # straight into it
    np.testing.assert_allclose(xy, [95.0, 50.0])
    assert blocked.all()


def test_a_fast_move_does_not_tunnel_through_a_thin_wall():
    # centres stay 16 units (Doom's player radius) from a wall: a thin wall leaves a 32-unit gap between rooms
    two_rooms = np.concatenate([room((0, 0), (60, 100)), room((88, 0), (140, 100))])
    walkable = WalkableMap.fit(two_rooms, cell=8.0, max_hole=0)
    assert not walkable.contains(np.array([74.0, 50.0]))
    xy, _ = walkable.move(np.array([55.0, 50.0]), np.array([40.0, 0.0]))  # would land in the other room
    assert xy[0] < 64


def test_round_trip_through_tensors():
    walkable = WalkableMap.fit(room((0, 0), (50, 80)), cell=8.0)
    again = WalkableMap.from_tensors(walkable.to_tensors())
    assert again.origin == walkable.origin and again.cell == walkable.cell
    np.testing.assert_array_equal(again.grid, walkable.grid)


def test_start_off_the_area_is_moved_onto_it():
    walkable = WalkableMap.fit(room((0, 0), (50, 50)), cell=8.0)
    inside = walkable.nearest_inside(np.array([200.0, 25.0]))
    assert walkable.contains(inside) and inside[0] < 60
