"""cxrcls.cohort reads label tables as users have them: NIH's Data_Entry_2017*.csv and wide
CheXpert/MIMIC-style tables (a 0/1 column per finding, study labels by exact name ignoring case),
saved with ',', ';' or tabs; what it cannot read is refused naming the file and line."""
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
    with pytest.raises(ValueError, match=r"line 3, column 'Edema': '-1.0' is not 1, 0, true, "
                                         r"false or empty \(.* decide uncertain labels"):
        C.read_label_table(table)
    write(table, "image,patient_id,Edema\na.png,1,yes\n")
    with pytest.raises(ValueError, match=r"line 2, column 'Edema': 'yes' is not 1, 0, true"):
        C.read_label_table(table)
    write(table, "image,subject_id,Edema\na.png,10000032,1\n")   # MIMIC's name for the patient
    with pytest.raises(ValueError, match=r"column 'subject_id': '10000032' is not 1, 0, true, "
                                         r"false or empty \(a wide table's columns besides "
                                         r"image and patient_id are findings"):
        C.read_label_table(table)
    write(table, "image,patient_id,Edema,EDEMA\na.png,1,1,1\n")
    with pytest.raises(ValueError, match=r"more than one column for \['Edema'\]"):
        C.read_label_table(table)
    write(table, "image,patient_id\na.png,1\n")
    with pytest.raises(ValueError, match=r"neither an NIH table .* nor a wide one"):
        C.read_label_table(table)


NIH = [["Image Index", "Finding Labels", "Patient ID", "OriginalImage[Width,Height]"],
       ["a.png", "Mass|Nodule", "0007", "2500,2048"], ["b.png", "No Finding", "12", "2048,2500"]]


def records(path):
    return [(r.image, sorted(r.findings), r.patient_id) for r in C.read_label_table(path)]


def test_tables_saved_with_semicolons_or_tabs_read_as_the_comma_table(tmp_path):
    """A spreadsheet in a locale that writes ';' (with a byte-order mark and CRLF, and NIH's column
    name holding a comma), and a .tsv: the separator is the one under which the header holds an
    image column."""
    comma = write(tmp_path / "comma.csv", "\n".join(",".join(f'"{c}"' for c in row)
                                                    for row in NIH) + "\n")
    semicolon = tmp_path / "semicolon.csv"
    semicolon.write_bytes(("\ufeff" + "\r\n".join(";".join(row) for row in NIH) + "\r\n")
                          .encode("utf-8"))
    tsv = write(tmp_path / "labels.tsv", "\n".join("\t".join(row) for row in NIH) + "\n")
    expected = [("a.png", ["Mass", "Nodule"], "0007"), ("b.png", [NO_FINDING], "12")]
    assert records(comma) == records(semicolon) == records(tsv) == expected


def test_headers_match_ignoring_case_and_spaces_and_empty_rows_are_skipped(tmp_path):
    """What spreadsheets do: header names in other case or with spaces, rows of empty cells at the
    end, old-Mac CR line ends."""
    table = tmp_path / "labels.csv"
    table.write_bytes(b"image index , FINDING LABELS,patient id,\ra.png,Mass,7,\r,,,\r"
                      b"b.png,No Finding,8,\r,,,\r")
    assert records(table) == [("a.png", ["Mass"], "7"), ("b.png", [NO_FINDING], "8")]
    write(table, "Image,Patient_ID,EDEMA ,no finding\na.png,1,TRUE,False\nb.png,2,false,true\n"
                 ",,,\n")
    assert records(table) == [("a.png", ["Edema"], "1"), ("b.png", [NO_FINDING], "2")]


def test_nih_findings_are_read_ignoring_case_and_contradictions_or_blanks_are_refused(tmp_path):
    table = write(tmp_path / "labels.csv", "Image Index,Finding Labels,Patient ID\n"
                  "a.png,mass | NODULE |Hernia,1\nb.png,no finding,2\nc.png,Atelectasis,3\n")
    assert records(table) == [("a.png", ["Hernia", "Mass", "Nodule"], "1"),
                              ("b.png", [NO_FINDING], "2"), ("c.png", ["Atelectasis"], "3")]
    write(table, "Image Index,Finding Labels,Patient ID\na.png,Mass,1\nb.png,No Finding|Edema,2\n")
    with pytest.raises(ValueError, match=r"labels.csv: line 3 is marked No Finding and "
                                         r"\['Edema'\]"):
        C.read_label_table(table)
    write(table, "Image Index,Finding Labels,Patient ID\na.png,Mass,1\nb.png,,2\n")
    with pytest.raises(ValueError, match=r"labels.csv: line 3: 'Finding Labels' is empty \(an "
                                         r"image without findings is written 'No Finding'\)"):
        C.read_label_table(table)


def test_columns_that_would_be_read_ambiguously_are_refused(tmp_path):
    """Two columns of one name (the first's cells would be lost), a column without a name holding
    values (a finding without a name would stop No Finding), two image columns."""
    table = write(tmp_path / "labels.csv", "image,patient_id,Mass,Mass\na.png,1,1,0\n")
    with pytest.raises(ValueError, match=r"more than one column for \['Mass'\]"):
        C.read_label_table(table)
    write(table, "image,patient_id,Edema,,\na.png,1,0,,\nb.png,2,0,1,\n")
    with pytest.raises(ValueError, match=r"line 3, column 4 has no name in the header but holds "):
        C.read_label_table(table)
    write(table, "Image Index,image,Finding Labels\na.png,a.png,Mass\n")
    with pytest.raises(ValueError, match=r"more than one column for 'Image Index': "
                                         r"\['Image Index', 'image'\]"):
        C.read_label_table(table)


def test_a_table_not_in_utf8_is_refused_by_the_cli_naming_file_and_line(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_bytes("Image Index,Finding Labels,Patient ID\r\nb\u00e9b\u00e9.png,Mass,1\r\n"
                      .encode("cp1252"))
    with pytest.raises(SystemExit, match=r"labels.csv: line 2 is not UTF-8 text \(byte 0xe9\)"):
        C.main(["--labels", str(table), "--out", str(tmp_path / "o")])


def test_image_names_that_are_paths_or_repeated_are_refused_naming_lines(tmp_path):
    for name in ("images_001/images/a.png", "images_001\\images\\a.png", "/data/a.png",
                 "../a.png", ".."):
        table = write(tmp_path / "labels.csv", f"image,patient_id,Mass\nb.png,1,0\n{name},2,1\n")
        with pytest.raises(ValueError, match=r"labels.csv: line 3: image name .* is not a plain "):
            C.read_label_table(table)
    write(table, "image,patient_id,Mass\na.png,1,0\nb.png,2,1\na.png,3,1\n")
    with pytest.raises(ValueError, match=r"image 'a.png' is on line 2 and on line 4"):
        C.read_label_table(table)


def test_without_a_patient_column_ids_are_empty_and_only_an_image_split_runs(tmp_path):
    rows = ["Image Index,Finding Labels"] + [f"{i:03d}.png,{'Mass' if i % 2 else 'No Finding'}"
                                             for i in range(20)]
    table = write(tmp_path / "labels.csv", "\n".join(rows) + "\n")
    assert {r.patient_id for r in C.read_label_table(table)} == {""}
    C.main(["--labels", str(table), "--out", str(tmp_path / "o"), "--splits", "1"])
    assert (tmp_path / "o" / "cohort.csv").read_text().splitlines()[1] == "000.png,0,0,0,0,0,1,"
    with pytest.raises(SystemExit, match=r"20 of 20 cohort images have no Patient ID .* needs a "
                                         r"'Patient ID' \(or 'patient_id'\) column"):
        C.main(["--labels", str(table), "--out", str(tmp_path / "p"), "--split-by", "patient"])


def test_the_cli_names_findings_outside_the_study_with_counts(tmp_path, capsys):
    """A finding written with the wrong separator ('Mass, Nodule') is no study label: the note
    shows it."""
    kinds = ["Mass", '"Mass, Nodule"', "Hernia|Mass", "No Finding"]
    rows = ["Image Index,Finding Labels,Patient ID"] + [f"{i:03d}.png,{kinds[i % 4]},{i}"
                                                        for i in range(20)]
    table = write(tmp_path / "labels.csv", "\n".join(rows) + "\n")
    C.main(["--labels", str(table), "--out", str(tmp_path / "o"), "--splits", "1"])
    assert (f"cohort: note: findings outside the study in {table} (an image with only these is "
            "not No Finding): Hernia 5, Mass, Nodule 5\n") in capsys.readouterr().err


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
                       match=r"line 3 has no cell for \['Finding Labels', 'Patient ID'"):
        C.read_label_table(table)
    write(table, "image,patient_id,Mass\na.png,1,0,1\n")
    with pytest.raises(ValueError, match=r"line 2 has extra cells \['1'\]"):
        C.read_label_table(table)
    write(table, "Image Index,Finding Labels,Patient ID,\na.png,Mass,1,\nb.png,Edema,2,,\n")
    assert findings(C.read_label_table(table)) == {"a.png": {"Mass"}, "b.png": {"Edema"}}
