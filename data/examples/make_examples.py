"""Write the example unlabeled pair files (pairs.csv, .tsv, .jsonl, .parquet) from one list.

The sentences were written for this project (no benchmark text). They cover close paraphrases,
related but different statements and unrelated pairs, so a trained model has something to rank.

Run from anywhere: ``python data/examples/make_examples.py``. Needs pyarrow for the Parquet file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent

PAIRS: list[tuple[str, str]] = [
    # Close paraphrases.
    ("A man is playing a guitar on the porch.", "A man plays the guitar outside on the porch."),
    ("The train to Leeds was cancelled this morning.", "This morning's train to Leeds did not run."),
    ("She bought three apples at the market.", "At the market she purchased three apples."),
    ("The children are building a sandcastle.", "Kids are making a castle out of sand."),
    ("It is going to rain tomorrow afternoon.", "Rain is expected tomorrow afternoon."),
    ("The museum opens at nine on weekdays.", "On weekdays the museum opens at 9 a.m."),
    ("He forgot his umbrella at the office.", "He left his umbrella behind at work."),
    ("The company reported higher profits this quarter.", "Profits at the company rose this quarter."),
    ("A dog is chasing a ball across the park.", "A dog runs after a ball in the park."),
    ("The recipe needs two cups of flour.", "You need two cups of flour for this recipe."),
    ("The meeting has been moved to Thursday.", "The meeting was rescheduled for Thursday."),
    ("A woman is slicing tomatoes in the kitchen.", "In the kitchen, a woman cuts tomatoes into slices."),
    ("The bridge will be closed for repairs.", "Repairs will close the bridge."),
    ("My phone battery dies very quickly.", "The battery in my phone runs out fast."),
    # Related, partly overlapping.
    ("A man is playing a guitar on the porch.", "A man is playing a piano in the living room."),
    ("The train to Leeds was cancelled this morning.", "The bus to Leeds was late this morning."),
    ("She bought three apples at the market.", "She sold three pears at the market."),
    ("The children are building a sandcastle.", "The children are swimming in the sea."),
    ("It is going to rain tomorrow afternoon.", "It rained heavily yesterday afternoon."),
    ("A cat is sleeping on the windowsill.", "A cat is watching birds from the window."),
    ("The team won the match in extra time.", "The team lost the final on penalties."),
    ("The library lends e-books to its members.", "Members can borrow printed books from the library."),
    ("The soup needs more salt.", "The soup is far too salty."),
    ("Two people are hiking up a mountain trail.", "Two people are cycling down a mountain road."),
    ("The printer on the second floor is out of paper.", "The printer on the second floor is jammed."),
    ("He is learning to speak Japanese.", "He is teaching Japanese to beginners."),
    # Unrelated.
    ("A man is playing a guitar on the porch.", "The central bank raised interest rates."),
    ("The museum opens at nine on weekdays.", "A dog is chasing a ball across the park."),
    ("She bought three apples at the market.", "The volcano erupted for the first time in a century."),
    ("My phone battery dies very quickly.", "The orchestra rehearsed the symphony all night."),
    ("The recipe needs two cups of flour.", "Satellites orbit the earth every ninety minutes."),
    ("The bridge will be closed for repairs.", "A child is drawing a picture of a horse."),
    ("The soup needs more salt.", "The election results will be announced on Monday."),
    ("He forgot his umbrella at the office.", "Penguins live mostly in the southern hemisphere."),
    # Punctuation, quotes and non-ASCII text that a reader must keep intact.
    ('She said "see you later" and left.', "She said goodbye and walked out."),
    ("The café serves crêpes and croissants.", "The cafe sells pancakes and pastries."),
    ("Prices rose by 5%, according to the report.", "The report says prices went up 5 percent."),
    ("The word 'naïve' has a diaeresis.", "Naive is sometimes written with two dots over the i."),
    ("Tabs, commas, and semicolons; all fine.", "Punctuation marks are handled correctly."),
    ("It's 20°C in Zürich today.", "Today Zurich has a temperature of twenty degrees."),
]


def write_all(folder: Path = HERE) -> None:
    """Write the four files with the columns ``sentence1`` and ``sentence2``."""
    first, second = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    with (folder / "pairs.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["sentence1", "sentence2"])
        writer.writerows(PAIRS)
    with (folder / "pairs.tsv").open("w", encoding="utf-8", newline="") as handle:
        handle.write("sentence1\tsentence2\n")
        handle.writelines(f"{a}\t{b}\n" for a, b in PAIRS)
    with (folder / "pairs.jsonl").open("w", encoding="utf-8", newline="") as handle:
        for a, b in PAIRS:
            handle.write(json.dumps({"sentence1": a, "sentence2": b}, ensure_ascii=False) + "\n")
    pq.write_table(pa.table({"sentence1": first, "sentence2": second}), folder / "pairs.parquet")


if __name__ == "__main__":
    for pair in PAIRS:
        if any("\t" in text or "\n" in text for text in pair):
            raise SystemExit(f"make_examples expects no tabs or newlines in text, got {pair!r}; fix PAIRS.")
    write_all()
