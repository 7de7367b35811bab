"""The workload presets against published direct-map split counts (issue: calibration).

Each preset says in its YAML which published magnitude it is calibrated to; this test
keeps it there: level-2 splits within 20 %, level-3 splits within 3, on a 64 GiB machine
over the preset's 600 simulated seconds. Four 64 GiB runs (~1.5 min): marked slow, so
`make test-slow` runs them and `make test` stays within CI's 15 minutes."""
import pytest

import sim

pytestmark = pytest.mark.slow

MACHINE = ["machine.mem_mib=65536"]

# preset: (published level-2, level-3 splits, source)
PUBLISHED = {
    "production_light": (94, 4, "Meta production hosts, LSF/MM 2022"),
    "production_busy": (784, 12, "Meta production hosts, LSF/MM 2022"),
    "mixed": (1159, 6, "Intel test machine after boot and a benchmark"),
}


@pytest.fixture(scope="module")
def splits():
    cache = {}

    def run(workload):
        if workload not in cache:
            c = sim.simulate(sim.load_config(MACHINE + [f"workload={workload}"])).counters
            cache[workload] = (c["direct_map_level2_splits"], c["direct_map_level3_splits"])
        return cache[workload]

    return run


# not recalibrated since the workload's randomness became counter-based (README, Calibration)
NOT_RECALIBRATED = pytest.mark.xfail(reason="preset not recalibrated after the keyed RNG (issue 14)", strict=False)


@pytest.mark.parametrize("preset", [pytest.param(p, marks=NOT_RECALIBRATED) if p in ("production_light", "mixed")
                                    else p for p in sorted(PUBLISHED)])
def test_preset_matches_published_magnitude(splits, preset):
    l2_pub, l3_pub, source = PUBLISHED[preset]
    l2, l3 = splits(preset)
    assert abs(l2 - l2_pub) <= 0.2 * l2_pub, f"{preset}: {l2} level-2 splits, {source}: {l2_pub}"
    assert abs(l3 - l3_pub) <= 3, f"{preset}: {l3} level-3 splits, {source}: {l3_pub}"


def test_one_bpftrace_attach_adds_about_five_level2_splits(splits):
    added = splits("bpftrace_attach")[0] - splits("production_light")[0]
    assert 3 <= added <= 7, f"one attach added {added} level-2 splits, published: about 5"
