import numpy as np

from compass.selection.allocation import largest_remainder, water_fill


def test_largest_remainder_exact_counts():
    # exact shares 3.333.., 3.333.., 3.333..: one extra unit, tie goes to the lowest index
    assert largest_remainder(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    # 10 * [0.5, 0.3, 0.2] is already integral
    assert largest_remainder(np.array([5, 3, 2]), 10).tolist() == [5, 3, 2]
    # 7 * [0.45, 0.35, 0.2] = 3.15, 2.45, 1.4 -> floors 3,2,1 + one unit to remainder .45
    assert largest_remainder(np.array([0.45, 0.35, 0.2]), 7).tolist() == [3, 3, 1]
    assert largest_remainder(np.array([0, 0]), 5).tolist() == [0, 0]


def test_water_fill_reallocates_capped_supply():
    # gap shares 60/30/10 of 100, but cluster 0 only has 20 records: its 40 extra
    # go to clusters 1 and 2 in the ratio 3:1 -> 30+30=60 and 10+10=20
    alloc = water_fill(np.array([60.0, 30.0, 10.0]), np.array([20, 500, 500]), 100)
    assert alloc.tolist() == [20, 60, 20]


def test_water_fill_zero_weight_clusters_get_nothing():
    alloc = water_fill(np.array([0.0, 2.0, 1.0]), np.array([100, 5, 100]), 30)
    assert alloc.tolist() == [0, 5, 25]


def test_water_fill_stops_at_total_supply():
    alloc = water_fill(np.array([1.0, 1.0]), np.array([3, 4]), 100)
    assert alloc.tolist() == [3, 4]
