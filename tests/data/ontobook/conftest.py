"""Small hand-made ontology files for the OntoBook tests, written to tmp paths by fixtures."""

import gzip
from pathlib import Path

import pytest

CIM10_CSV = """code,type,ssr,psy,short,long
A17,3,NNNN,3,TUBERC. SYST. NERV.,Tuberculose du système nerveux
A170,0,NOOO,0,MENINGITE TUBERC.,Méningite tuberculeuse (G01*)
A171,0,NOOO,0,TUBERCULOME MENINGE,Tuberculome méningé (G07*)
A18,3,NNNN,3,TUBERC. AUTRES ORGANES,Tuberculose d'autres organes
A180,0,NOOO,0,TUBERC. OS ARTIC.,Tuberculose des os et des articulations
E11,3,NNNN,3,DIABETE TYPE 2,Diabète sucré de type 2
E112,0,NOOO,0,DIABETE 2 RENAL,Diabète sucré de type 2 avec complications rénales
E119,0,NOOO,0,DIABETE 2 SAI,Diabète sucré de type 2 sans complication
E119+0,0,NOOO,0,DIABETE 2 EXT,Diabète sucré de type 2 sans complication - extension
G01,3,NNNN,3,MENINGITE BACT. CAILLEURS,Méningite au cours d'affections bactériennes classées ailleurs
G07,3,NNNN,3,ABCES INTRACRANIENS CAILLEURS,*** SU19 *** Abcès et granulome intracrâniens et intrarachidiens au cours d'affections classées ailleurs
M011,0,NOOO,0,ARTHRITE TUBERC.,Arthrite tuberculeuse (A18.0)
M0110,2,NNNO,1,ARTHRITE TUBERC. MULT.,Arthrite tuberculeuse (A18.0) - Sièges multiples
M01,3,NNNN,3,ARTHRITES INFECT. CAILLEURS,Infections directes de l'articulation au cours de maladies infectieuses classées ailleurs
"""

ATC_JSON = """{
  "A10BA02": ["GLUCOPHAGE", "STAGID", "metformine"],
  "A10BB01": ["DAONIL", "glibenclamide"],
  "A10B": ["hypoglycemiants, insulines exclues"],
  "N02BE01": ["DOLIPRANE", "DAFALGAN", "paracetamol"],
  "N02BA01": ["ASPEGIC", "acide acetylsalicylique"],
  "N02BE51": ["DAFALGAN CODEINE", "DAFALGAN", "paracetamol en association"]
}
"""

# A SKOS scheme as a terminology server publishes it: notation = code, French prefLabel,
# broader/narrower, and a publisher-specific exclusion property mapped through config.
SKOS_TTL = """@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix ex: <http://example.org/ccam/> .
@prefix exv: <http://example.org/vocab#> .

ex:chap01 a skos:Concept ; skos:notation "01" ; skos:prefLabel "Système nerveux central"@fr, "Central nervous system"@en .
ex:chap0101 a skos:Concept ; skos:notation "01.01" ; skos:prefLabel "Actes diagnostiques sur le système nerveux"@fr ;
    skos:broader ex:chap01 .
ex:AAQP007 a skos:Concept ; skos:notation "AAQP007" ; skos:prefLabel "Électroencéphalographie de longue durée"@fr ;
    skos:broader ex:chap0101 ; exv:excludes ex:AAQP001 .
ex:AAQP001 a skos:Concept ; skos:notation "AAQP001" ; skos:prefLabel "Électroencéphalographie standard"@fr .
ex:chap0101 skos:narrower ex:AAQP001 .
ex:orphan a skos:Concept .
"""

OWL_TTL = """@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix ex: <http://example.org/atc/> .

ex:N a owl:Class ; rdfs:label "Système nerveux"@fr .
ex:N02 a owl:Class ; rdfs:label "Analgésiques"@fr ; rdfs:subClassOf ex:N .
ex:N02B a owl:Class ; rdfs:label "Autres analgésiques et antipyrétiques"@fr ; rdfs:subClassOf ex:N02 .
"""


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def write_file(tmp_path):
    return lambda name, text: _write(tmp_path, name, text)


@pytest.fixture()
def cim10_csv(tmp_path) -> Path:
    path = tmp_path / "cim10.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(CIM10_CSV)
    return path


@pytest.fixture()
def atc_json(tmp_path) -> Path:
    return _write(tmp_path, "drugs.json", ATC_JSON)


@pytest.fixture()
def skos_ttl(tmp_path) -> Path:
    return _write(tmp_path, "ccam.ttl", SKOS_TTL)


@pytest.fixture()
def owl_ttl(tmp_path) -> Path:
    return _write(tmp_path, "atc.ttl", OWL_TTL)


@pytest.fixture()
def cim10_graph(cim10_csv):
    from mcbio.data.ontobook.cim10 import load_cim10_csv

    return load_cim10_csv(cim10_csv)[0]


@pytest.fixture()
def atc_graph(atc_json):
    from mcbio.data.ontobook.atc import load_atc_json

    return load_atc_json(atc_json)[0]
