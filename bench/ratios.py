"""Print a tokens/s table with ratios (ours-f32 / peer) from a compare.sh JSONL file."""

import json
import sys
from collections import defaultdict

rows = defaultdict(dict)
for line in open(sys.argv[1]):
    if line.startswith("#"):
        print(line.strip())
        continue
    r = json.loads(line)
    rows[r["dataset"]][r["peer"]] = r["tokens_per_second"]
for dataset, peers in rows.items():
    ours = peers.get("ours-f32")
    print(f"\n{dataset}")
    for peer, tps in sorted(peers.items(), key=lambda kv: -kv[1]):
        ratio = f"  ours-f32 / this = {ours / tps:.2f}x" if ours and not peer.startswith("ours-f32") else ""
        print(f"  {peer:<26} {tps:>9.0f} tokens/s{ratio}")
