"""The walkable area learned from recorded positions: what it contains, and moves that stop or slide at its edge."""

import numpy as np

from worldsim.world.walkable import WalkableMap
from worldsim.world.walls import Walls


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
    np.testing.assert_allclose(walkable.move(np.array([50.0, 50.0]), np.array([5.0, 3.0])), [55.0, 53.0])
    # into the east wall at an angle: slid north along it
    np.testing.assert_allclose(walkable.move(np.array([95.0, 50.0]), np.array([40.0, 6.0])), [95.0, 56.0])
    # straight into it: stays
    np.testing.assert_allclose(walkable.move(np.array([95.0, 50.0]), np.array([40.0, 0.0])), [95.0, 50.0])


def test_a_fast_move_does_not_tunnel_through_a_thin_wall():
    # centres stay 16 units (Doom's player radius) from a wall: a thin wall leaves a 32-unit gap between rooms
    two_rooms = np.concatenate([room((0, 0), (60, 100)), room((88, 0), (140, 100))])
    walkable = WalkableMap.fit(two_rooms, cell=8.0, max_hole=0)
    assert not walkable.contains(np.array([74.0, 50.0]))
    xy = walkable.move(np.array([55.0, 50.0]), np.array([40.0, 0.0]))  # would land in the other room
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


def test_the_maps_walls_bound_the_area_exactly_and_it_reaches_up_to_them():
    # recorded players crossed the middle of a room 0-200 x 0-100 and never came near its east wall (x = 200)
    walls = Walls(np.array([[200.0, 0.0, 200.0, 100.0], [0.0, 0.0, 0.0, 100.0], [0.0, 0.0, 200.0, 0.0],
                            [0.0, 100.0, 200.0, 100.0]]))
    walkable = WalkableMap.fit(room((20, 20), (120, 80)), cell=8.0, walls=walls, reach=200.0)
    assert walkable.contains(np.array([180.0, 50.0]))  # reached, up to the wall
    assert not walkable.contains(np.array([250.0, 50.0]))  # never past it
    # the player's box may come up to the wall but not touch it: x < 184
    xy = walkable.move(np.array([180.0, 50.0]), np.array([10.0, 0.0]))
    np.testing.assert_allclose(xy, [180.0, 50.0])
    np.testing.assert_allclose(walkable.move(np.array([178.0, 50.0]), np.array([5.9, 0.0])), [183.9, 50.0])
    # without reach, the recorded area's edge holds
    assert not WalkableMap.fit(room((20, 20), (120, 80)), cell=8.0, walls=walls).contains(np.array([180.0, 50.0]))


def test_a_move_into_an_angled_wall_slides_along_it():
    walls = Walls(np.array([[0.0, 100.0, 100.0, 0.0]]))  # a wall running 45 degrees down to the right
    walkable = WalkableMap.fit(room((0, 0), (100, 100)), cell=8.0, max_hole=0, walls=walls, reach=0.0)
    start = np.array([30.0, 30.0])  # the box's top-right corner is 24 units (along x + y) from the wall
    xy = walkable.move(start, np.array([20.0, 0.0]))  # east, into the wall
    assert walls.clear(xy[None])[0]
    np.testing.assert_allclose(xy - start, [10.0, -10.0])  # slid along the wall with the move's share along it


def test_a_player_overlapping_a_wall_can_walk_out_of_it():
    walls = Walls(np.array([[50.0, 0.0, 50.0, 100.0]]))
    walkable = WalkableMap.fit(room((0, 0), (100, 100)), cell=8.0, max_hole=0)
    walkable = WalkableMap(walkable.origin, walkable.cell, walkable.grid, None, walls)
    np.testing.assert_allclose(walkable.move(np.array([40.0, 50.0]), np.array([-6.0, 0.0])), [34.0, 50.0])
    np.testing.assert_allclose(walkable.move(np.array([30.0, 50.0]), np.array([6.0, 0.0])), [30.0, 50.0])


def test_walls_round_trip_through_tensors():
    walls = Walls(np.array([[200.0, 0.0, 200.0, 100.0]]))
    walkable = WalkableMap.fit(room((20, 20), (120, 80)), cell=8.0, walls=walls, reach=64.0)
    again = WalkableMap.from_tensors(walkable.to_tensors())
    np.testing.assert_array_equal(again.grid, walkable.grid)
    np.testing.assert_array_equal(again.walls.segments, walls.segments)


def test_a_tic_slide_goes_up_to_the_wall_and_keeps_what_is_left_along_it():
    # the east wall at x = 200: a box 4 units short of it moves (8, 6) in a tic
    walls = Walls(np.array([[200.0, 0.0, 200.0, 100.0]]))
    walkable = WalkableMap.fit(room((20, 20), (120, 80)), cell=8.0, walls=walls, reach=200.0)
    xy, momentum = walkable.slide(np.array([180.0, 50.0]), np.array([8.0, 6.0]))
    # half the move reaches the wall; Doom stops a 32nd of the move short and slides the other (1 - 1/2) along it
    ahead = 0.5 - 1 / 32
    np.testing.assert_allclose(momentum, [0.0, 6.0 * (1 - ahead - 1 / 32)], atol=0.02)
    np.testing.assert_allclose(xy, [180.0 + 8.0 * ahead, 50.0 + 6.0 * ahead + momentum[1]], atol=0.03)
    assert walls.clear(xy[None])[0]
    # a free move is the move, and the momentum stays
    xy, momentum = walkable.slide(np.array([100.0, 50.0]), np.array([8.0, 6.0]))
    np.testing.assert_allclose(xy, [108.0, 56.0])
    np.testing.assert_allclose(momentum, [8.0, 6.0])


def test_a_tic_slide_into_a_corner_steps_along_y_then_x_and_keeps_the_momentum():
    walls = Walls(np.array([[200.0, 0.0, 200.0, 100.0], [0.0, 100.0, 200.0, 100.0]]))  # the north-east corner
    walkable = WalkableMap.fit(room((20, 20), (120, 80)), cell=8.0, walls=walls, reach=200.0)
    xy, momentum = walkable.slide(np.array([183.0, 83.0]), np.array([4.0, 4.0]))  # both walls within 1 unit
    np.testing.assert_allclose(xy, [183.0, 83.0], atol=1.0)
    np.testing.assert_allclose(momentum, [4.0, 4.0])  # Doom's stairstep leaves the momentum: friction takes it
