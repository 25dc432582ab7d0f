import json

from tools.reproduction import DOCUMENT, HEADER, REPO_ROOT, best_results, main, table, update


def write(folder, notebook, profile, rows, seconds=120.0, name=None, **extra):
    (folder / (name or f"{notebook}.{profile}.json")).write_text(json.dumps({
        "notebook": notebook, "profile": profile, "seconds": seconds, "machine": {"device": "cpu"},
        "notes": {"data_source": "mnist (subset)"}, "reproduction": rows, **extra}))


def test_largest_profile_wins_and_rows_are_marked(tmp_path):
    row = {"what": "final loss", "ours": 301.5, "source_value": 307, "source": "Zhao 2023", "setting": "z=2"}
    write(tmp_path, "02_ae_vs_vae", "smoke", [dict(row, ours=900.0)])
    write(tmp_path, "02_ae_vs_vae", "cpu", [row])
    best = best_results(tmp_path)
    assert best["02_ae_vs_vae"]["profile"] == "cpu"
    md = table(best)
    assert "| 02_ae_vs_vae | final loss | 307 (Zhao 2023) | 301.5 | z=2 | cpu (not full scale) | cpu |" in md
    assert "900" not in md
    write(tmp_path, "05_ccvae", "cpu", [dict(row, what="accuracy of q(y|z_c)")])
    assert "q(y\\|z_c)" in table(best_results(tmp_path))
    write(tmp_path, "02_ae_vs_vae", "full", [dict(row, ours=299.0)])
    assert "| full |" in table(best_results(tmp_path))


def test_a_lesson_variant_has_rows_of_its_own(tmp_path):
    row = {"what": "adding glasses succeeds (%)", "ours": 98.0, "source_value": "figures", "source": "Maggipinto 2020",
           "setting": "faces"}
    write(tmp_path, "06_vac_introvac", "full", [row])
    write(tmp_path, "06_vac_introvac", "full", [dict(row, ours=91.0)], name="06_vac_introvac.full.eye.json",
          variant="eye")
    best = best_results(tmp_path)
    assert set(best) == {"06_vac_introvac", "06_vac_introvac (eye)"}
    md = table(best)
    assert "| 06_vac_introvac | adding glasses" in md and "| 06_vac_introvac (eye) | adding glasses" in md


def test_the_document_is_written_whole_and_checked(tmp_path):
    doc, readme = tmp_path / "docs" / "reproduction.md", tmp_path / "README.md"
    readme.write_text("intro\n")
    results = tmp_path / "results"
    results.mkdir()
    write(results, "01_elbo", "cpu", [{"what": "x", "ours": 1.0, "source_value": None, "source": "s"}])
    args = ["--results", str(results), "--out", str(doc), "--readme", str(readme)]
    assert main([*args, "--check"]) == 1  # no document yet
    assert update(results, doc, readme) == [doc]  # the README has no notebook row: left as it was
    text = doc.read_text()
    assert text.startswith(HEADER) and text.endswith("|\n")
    assert text == HEADER + table(best_results(results)) + "\n"
    assert "| 01_elbo | x | — (s) | 1 |" in text
    assert main([*args, "--check"]) == 0 and update(results, doc, readme) == []
    doc.write_text(text.replace("| 1 |", "| 2 |"))  # a hand edit, or a table from older results
    assert main([*args, "--check"]) == 1
    doc.write_text(text + "a note added by hand\n")  # the file is generated whole: nothing may be added
    assert main([*args, "--check"]) == 1
    write(results, "01_elbo", "cpu", [{"what": "x", "ours": 3.0, "source_value": None, "source": "s"}])
    assert main([*args]) == 0 and "| 01_elbo | x | — (s) | 3 |" in doc.read_text()
    assert readme.read_text() == "intro\n"


def test_notebook_minutes_follow_the_cpu_results(tmp_path):
    readme, doc = tmp_path / "README.md", tmp_path / "reproduction.md"
    row = "| 03 | [c and β](notebooks/03_c_and_beta.ipynb) | the decoder variance | 6.0 | [![Open](badge)](link) |"
    other = "| 04 | [GECO](notebooks/04_geco.ipynb) | no results file | 3.6 | [![Open](badge)](link) |"
    escaped = "| 06 | [VAC](notebooks/06_vac.ipynb) | sampling p(z\\|y) | 6.0 | [![Open](badge)](link) |"
    readme.write_text(f"{row}\n{other}\n{escaped}\n")
    results = tmp_path / "results"
    results.mkdir()
    write(results, "03_c_and_beta", "cpu", [], seconds=75.0)
    write(results, "06_vac", "cpu", [], seconds=135.0)
    update(results, doc, None)  # the document alone: the README is left as it was
    assert readme.read_text() == f"{row}\n{other}\n{escaped}\n"
    args = ["--results", str(results), "--readme", str(readme), "--out", str(doc)]
    assert main([*args, "--check"]) == 1  # the document is current, the minutes are not
    assert main([*args, "--check", "--no-readme"]) == 0
    assert update(results, doc, readme) == [readme]
    lines = readme.read_text().splitlines()
    assert lines[0] == row.replace("| 6.0 |", "| 1.2 |") and lines[1] == other
    assert lines[2] == escaped.replace("| 6.0 |", "| 2.2 |")
    assert main([*args, "--check"]) == 0


def test_the_committed_document_and_readme_match_the_committed_results():
    assert (REPO_ROOT / DOCUMENT).is_file(), f"{DOCUMENT} is missing: run python -m tools.reproduction"
    assert main(["--check"]) == 0, f"run python -m tools.reproduction and commit {DOCUMENT} and README.md"


def test_only_completed_passing_runs_fill_the_table(tmp_path):
    row = {"what": "final loss", "ours": 301.5, "source_value": 307, "source": "Zhao 2023", "setting": "z=2"}
    write(tmp_path, "02_ae_vs_vae", "cpu", [row])
    write(tmp_path, "02_ae_vs_vae", "full", [dict(row, ours=1.0)], name="02_ae_vs_vae.full.failed.json",
          completed=False)
    write(tmp_path, "03_c_and_beta", "full", [dict(row, ours=2.0)], checks=[{"name": "x", "passed": False}])
    write(tmp_path, "04_geco", "full", [dict(row, ours=3.0)], completed=False)
    best = best_results(tmp_path)
    assert best["02_ae_vs_vae"]["profile"] == "cpu" and set(best) == {"02_ae_vs_vae"}
    write(tmp_path, "05_ccvae", "cpu", [row], completed=True, overrides={"EPOCHS": {"value": 3, "profile": 15}})
    assert "| cpu (not full scale), with EPOCHS=3 |" in table(best_results(tmp_path))
