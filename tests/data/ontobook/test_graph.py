"""Graph construction from small hand-made CSV, JSON and RDF inputs."""

import pytest

from mcbio.config.ontobook import RdfMappingConfig
from mcbio.data.ontobook.atc import load_atc_json
from mcbio.data.ontobook.cim10 import display_code, load_cim10_csv, split_label
from mcbio.data.ontobook.graph import GraphError
from mcbio.data.ontobook.rdf import load_rdf


@pytest.fixture()
def cim10(cim10_csv):
    return load_cim10_csv(cim10_csv)


def test_cim10_hierarchy_from_code_structure(cim10):
    graph, _ = cim10
    assert graph.concept("A00-B99").kind == "chapter"
    assert graph.neighbours("A17", "broader") == ["A00-B99"]
    assert sorted(graph.neighbours("A17", "narrower")) == ["A170", "A171"]
    assert graph.neighbours("E119+0", "broader") == ["E119"]  # ATIH '+' extension under its sub-code
    assert graph.neighbours("M0110", "broader") == ["M011"]
    assert graph.concept("E112").code == "E11.2" and graph.concept("E112").kind == "subcode"
    assert sorted(graph.siblings("E112")) == ["E119"]
    assert "A18" in graph.siblings("A17")  # categories of one chapter are siblings
    assert graph.by_code("e11.2") == "E112"


def test_cim10_dagger_asterisk_relations_from_labels(cim10):
    graph, stats = cim10
    # "(G01*)" on an etiology code: G01 is its manifestation.
    assert graph.neighbours("A170", "has_manifestation") == ["G01"]
    assert graph.neighbours("G01", "manifestation_of") == ["A170"]
    # "(A18.0)" on an asterisk code: the code is due to A18.0.
    assert graph.neighbours("M011", "caused_by") == ["A180"]
    assert sorted(graph.neighbours("A180", "causes")) == ["M011", "M0110"]
    assert stats["unresolved_references"] == 0
    # References become edges and leave the label; ATIH markers are stripped.
    assert graph.concept("A170").label == "Méningite tuberculeuse"
    assert graph.concept("M0110").label == "Arthrite tuberculeuse - Sièges multiples"
    assert graph.concept("G07").label.startswith("Abcès et granulome")
    assert not graph.neighbours("A170", "excludes")  # the CSV has no exclusion notes


def test_split_label_and_display_code():
    assert split_label("Polyarthrite (M07.0-M07.3*, M09.0*)") == (
        "Polyarthrite", [("M07.0", "M07.3", "*"), ("M09.0", None, "*")])
    assert split_label("Maladie de Crohn (entérite régionale)") == ("Maladie de Crohn (entérite régionale)", [])
    assert display_code("C169+0") == "C16.9+0" and display_code("A00-B99") == "A00-B99"


def test_cim10_bad_input_names_file_and_line(write_file):
    bad = write_file("bad.csv", "code,long\nA17,Tuberculose\n17A,Oops\n")
    with pytest.raises(GraphError, match=r"bad.csv:3: not a CIM-10 code"):
        load_cim10_csv(bad)
    with pytest.raises(GraphError, match="missing column"):
        load_cim10_csv(write_file("nocol.csv", "code,label\nA17,x\n"))


def test_atc_levels_labels_and_drug_leaves(atc_json):
    graph, stats = load_atc_json(atc_json)
    assert graph.concept("A10BA02").label == "metformine" and graph.concept("A10BA02").kind == "atc5"
    assert graph.neighbours("A10BA02", "broader") == ["A10BA"]
    assert graph.neighbours("A10BA", "broader") == ["A10B"]
    assert graph.concept("A10B").label == "hypoglycemiants, insulines exclues"
    assert graph.concept("A").label == "Voies digestives et métabolisme"  # shipped level-1 table
    assert graph.concept("A10BA").label == "sous-groupe chimique"  # not labelled by the file
    assert sorted(graph.neighbours("A10BA02", "has_drug")) == ["drug:GLUCOPHAGE", "drug:STAGID"]
    # A brand sold under two codes is one node linking both.
    assert sorted(graph.neighbours("drug:DAFALGAN", "drug_of")) == ["N02BE01", "N02BE51"]
    assert graph.concept("drug:DAFALGAN").code is None
    assert stats["unlabelled_classes"] > 0


def test_rdf_skos_with_mapped_relation(skos_ttl):
    mapping = RdfMappingConfig(relations={"excludes": ["http://example.org/vocab#excludes"]},
                               code_pattern=r"[A-Z]{4}\d{3}")
    graph, stats = load_rdf(skos_ttl, mapping, "ccam")
    assert graph.concept("01").label == "Système nerveux central"  # French label preferred
    assert graph.neighbours("AAQP007", "broader") == ["01.01"]
    assert graph.neighbours("AAQP001", "broader") == ["01.01"]  # from skos:narrower
    assert graph.siblings("AAQP007") == ["AAQP001"]
    assert graph.neighbours("AAQP007", "excludes") == ["AAQP001"]
    assert graph.neighbours("AAQP001", "excluded_by") == ["AAQP007"]
    assert graph.concept("AAQP007").level == 2 and graph.concept("01").level == 0
    assert stats["skipped_without_label"] == 1


def test_rdf_owl_class_tree_codes_from_iri(owl_ttl):
    mapping = RdfMappingConfig(code=[], code_pattern=r"[A-Z]\d{2}[A-Z]?")
    graph, _ = load_rdf(owl_ttl, mapping, "atc")
    assert graph.neighbours("N02B", "broader") == ["N02"]
    assert graph.neighbours("N", "narrower") == ["N02"]


def test_rdf_unknown_relation_type_and_parse_error(skos_ttl, write_file):
    mapping = RdfMappingConfig(relations={"treats": ["http://example.org/vocab#excludes"]})
    with pytest.raises(GraphError, match="unknown edge type 'treats'"):
        load_rdf(skos_ttl, mapping, "ccam")
    with pytest.raises(GraphError, match="cannot parse RDF"):
        load_rdf(write_file("broken.ttl", "@prefix : <x> . :a :b"), RdfMappingConfig(), "ccam")
