"""cxrcls.cohort reads label tables as users have them: NIH's Data_Entry_2017*.csv and wide
CheXpert/MIMIC-style tables (a 0/1 column per finding, study labels by exact name ignoring case);
a ';'-separated table is refused with a message that says so."""
import pytest

from cxrcls import cohort as C
from cxrcls.labels import NO_FINDING


def write(path, text):
    path.write_text(text)
    return path


def findings(records):
    return {r.image: set(r.findings) for r in records}


def test_a_wide_table_maps_exact_study_names_ignoring_case_and_derives_no_finding(tmp_path):
    table = write(tmp_path / "labels.csv",
                  "image,patient_id,EDEMA,pneumonia,Lung Lesion,Cardiomegaly,Mass\n"
                  "a.png,p1,1.0,0,,0,1\n"
                  "b.png,p1,0,,1,0,0\n"          # only findings outside the study
                  "c.png,p2,,0.0,,,\n"           # no finding at all: No Finding
                  "d.png,p3,0,1,0,1,0\n")
    records = C.read_label_table(table)
    assert findings(records) == {"a.png": {"Edema", "Mass"}, "b.png": {"Lung Lesion"},
                                 "c.png": {NO_FINDING}, "d.png": {"Pneumonia", "Cardiomegaly"}}
    assert [r.patient_id for r in records] == ["p1", "p1", "p2", "p3"]
    labels = C.label_matrix(records)       # Lung Lesion is no study label: b has none
    assert labels.sum(axis=1).tolist() == [2, 0, 1, 1]


def test_a_no_finding_column_is_taken_as_given_and_contradictions_are_refused(tmp_path):
    table = write(tmp_path / "labels.csv", "Image Index,Patient ID,Edema,No Finding,Fibrosis\n"
                  "a.png,1,0,1,0\n"
                  "b.png,2,0,0,0\n")
    assert findings(C.read_label_table(table)) == {"a.png": {NO_FINDING}, "b.png": set()}
    write(table, "image,patient_id,Edema,no finding\na.png,1,1,1\n")
    with pytest.raises(ValueError, match=r"line 2 is marked No Finding and \['Edema'\]"):
        C.read_label_table(table)


def test_values_other_than_one_zero_or_empty_are_refused_naming_line_and_column(tmp_path):
    table = write(tmp_path / "labels.csv", "image,patient_id,Edema\na.png,1,1\nb.png,2,-1.0\n")
    with pytest.raises(ValueError, match=r"line 3, column 'Edema': '-1.0' is not 1, 0 or empty"):
        C.read_label_table(table)
    write(table, "image,patient_id,Edema,EDEMA\na.png,1,1,1\n")
    with pytest.raises(ValueError, match=r"more than one column for \['Edema'\]"):
        C.read_label_table(table)
    write(table, "image,patient_id\na.png,1\n")
    with pytest.raises(ValueError, match=r"neither an NIH table .* nor a wide one"):
        C.read_label_table(table)


def test_a_semicolon_separated_table_is_refused_saying_so(tmp_path):
    table = write(tmp_path / "labels.csv",
                  "\ufeffImage Index;Finding Labels;Patient ID\na.png;Mass;1\n")
    with pytest.raises(ValueError, match=r"separated by ';', not commas.*comma-separated CSV"):
        C.read_label_table(table)


def test_the_cli_draws_a_cohort_from_a_wide_table_and_names_absent_labels(tmp_path, capsys):
    rows = ["image,patient_id,Edema,Pneumonia,Support Devices"]
    for i in range(40):
        rows.append(f"{i:03d}.png,p{i},{int(i % 3 == 0)},{int(i % 4 == 0)},{int(i % 5 == 0)}")
    table = write(tmp_path / "wide.csv", "\n".join(rows) + "\n")
    C.main(["--labels", str(table), "--out", str(tmp_path / "cohort"), "--splits", "1"])
    assert "carries Mass, Nodule, Fibrosis" in capsys.readouterr().err
    cohort = (tmp_path / "cohort" / "cohort.csv").read_text().splitlines()
    assert cohort[0] == "image,Mass,Nodule,Pneumonia,Edema,Fibrosis,No Finding,patient_id"
    assert "000.png,0,0,1,1,0,0,p0" in cohort and "001.png,0,0,0,0,0,1,p1" in cohort
    assert not any(line.startswith("005.png") for line in cohort)  # Support Devices only


def test_a_row_whose_cells_do_not_match_the_header_is_refused_naming_its_line(tmp_path):
    """A short row of a wide table would read as 'absent'; a short NIH row has no findings cell;
    an extra non-empty cell means the cells no longer line up. A trailing empty cell (NIH's own
    Data_Entry_2017.csv ends its rows with ',') is accepted."""
    table = write(tmp_path / "labels.csv", "image,patient_id,Mass,Edema\na.png,1,0,1\nb.png,2,1\n")
    with pytest.raises(ValueError, match=r"line 3 has no cell for \['Edema'\]"):
        C.read_label_table(table)
    write(table, "Image Index,Finding Labels,Patient ID\na.png,Mass,1\nb.png\n")
    with pytest.raises(ValueError,
                       match=r"line 3 has no cell for \['Patient ID', 'Finding Labels'"):
        C.read_label_table(table)
    write(table, "image,patient_id,Mass\na.png,1,0,1\n")
    with pytest.raises(ValueError, match=r"line 2 has extra cells \['1'\]"):
        C.read_label_table(table)
    write(table, "Image Index,Finding Labels,Patient ID,\na.png,Mass,1,\nb.png,Edema,2,,\n")
    assert findings(C.read_label_table(table)) == {"a.png": {"Mass"}, "b.png": {"Edema"}}
