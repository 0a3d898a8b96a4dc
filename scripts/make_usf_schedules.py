#!/usr/bin/env python3
"""Writes USF schedules (schedulers/usf.c format) that restate classic solvers on PixArt's
20-step DPM-Solver timesteps (linspace 999, 949, ..., 50, then the clean end t = 0):

    configs/solvers/pixart_ddim_20.json        DDIM (data prediction, order 1)
    configs/solvers/pixart_dpmpp2m_20.json     DPM-Solver++(2M) (order 2, dpmsolver-2 relaxation)
    configs/solvers/pixart_unipc_bh2_20.json   UniPC-bh2 order 2 (pseudo corrector)

Continuous time t = (tau + 1) / 1000 for the model timestep tau. Usage:
    python3 scripts/make_usf_schedules.py [outdir]
"""
import json
import os
import sys

import numpy as np

D1 = lambda act, rel: {"estimate": "Difference_1", "active_points": [act], "relaxation": rel}
D2 = {"estimate": "Difference_2", "active_points": [-3, -1], "relaxation": None}
NONE = {"type": "no_corrector", "start_point": None, "taylor_order": None, "derivative_type": None}


def schedule(kind, steps=20, num_train=1000):
    taus = np.linspace(0, num_train - 1, steps + 1).round()[::-1][:-1]
    ts = [float((t + 1) / num_train) for t in taus] + [0.0]
    orders = [1 if kind == "ddim" or i in (0, steps - 1) else 2 for i in range(steps)]
    rel = "unipc-bh2" if kind == "unipc" else "dpmsolver-2"
    derivs = [[D1(-2, rel)] if o == 2 else [] for o in orders]
    corr = []
    for i, o in enumerate(orders):
        if kind != "unipc" or i == steps - 1:
            corr.append(NONE)
        elif o == 1:
            corr.append({"type": "pseudo", "start_point": -2, "taylor_order": 2, "derivative_type": [D1(-1, "unipc-bh2")]})
        else:
            corr.append({"type": "pseudo", "start_point": -2, "taylor_order": 3, "derivative_type": [D2, D2]})
    return {"source": f"ditrt scripts/make_usf_schedules.py: {kind} on PixArt's {steps}-step DPM-Solver timesteps",
            "timesteps": ts, "orders": orders, "prediction_types": ["data_prediction"] * steps,
            "start_points": [-1] * steps, "derivative_types": derivs, "corrector_types": corr, "afs": "no_afs"}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "configs/solvers"
    os.makedirs(out, exist_ok=True)
    for kind, name in (("ddim", "pixart_ddim_20"), ("dpmpp2m", "pixart_dpmpp2m_20"), ("unipc", "pixart_unipc_bh2_20")):
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(schedule(kind), f, indent=1)
            f.write("\n")
        print(f"  {out}/{name}.json")


if __name__ == "__main__":
    main()
