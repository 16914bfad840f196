"""De-identify a DICOM dataset: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Options applied (PS3.16 CID 7050): Clean Descriptors, and Retain Longitudinal Temporal Information
with Modified Dates (or dates removed, BRAINSCAN_DICOM_DATES=remove); Retain Patient Characteristics
only for sex and age, when BRAINSCAN_DICOM_KEEP_SEX_AGE is on.

Table E.1-1 names hundreds of attributes. Its actions are applied here by rule rather than by a
copy of the table, which also covers attributes the table does not list:

- named attributes: patient name and ID become the pseudonymous code, the type 2 identifiers are
  emptied, and patient, people, institution, device and request attributes and sequences are removed;
- private tags, overlays and curves, icons and every binary element but the pixel data are removed;
- every person name (PN) is emptied, wherever it is;
- every date (DA, DT) is shifted by the study's offset or emptied;
- every UID (UI) that is not defined by the DICOM standard is remapped with
  generate_uid(entropy_srcs=[uid, study salt]): the same within a study, unlinkable across studies;
- text of every kind (LO, SH, LT, ST, UT, UC, UR, AE and code strings, CS), at any depth of any
  sequence, is removed unless an allow-list of technical attributes keeps it, and a kept value is
  checked too: descriptions and code meanings are scrubbed down to acquisition vocabulary, code strings
  to known technical words, code values to code-shaped tokens, coding schemes and manufacturers to
  known names. A value that fails its check is removed (or emptied, where the attribute must exist).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from pydicom.dataelem import DataElement
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

DICOM_STANDARD_ROOT = "1.2.840.10008."
MAX_SHIFT_DAYS = 3650
MIN_SHIFT_DAYS = 365


def _tags(keywords: str) -> frozenset[int]:
    tags = {tag_for_keyword(keyword): keyword for keyword in keywords.split()}
    unknown = tags.pop(None, None)
    if unknown:
        raise ValueError(f"Not a DICOM keyword: {unknown}")
    return frozenset(tags)


# Type 2 identifiers: kept, with an empty value (action Z).
EMPTIED = _tags("AccessionNumber StudyID ReferringPhysicianName PatientBirthDate")
PATIENT_CHARACTERISTICS = _tags("PatientSex PatientAge")
TYPE_2_PATIENT_AND_STUDY = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                            "StudyID", "AccessionNumber")
PATIENT_IDENTITY = _tags("PatientName PatientID")  # replaced by the pseudonymous code (action D)

# Action X for the attributes whose VR the rules below would otherwise keep (numbers, codes,
# sequences), and for the identifying text the note on Table E.1-1 names, so the intent is explicit.
REMOVED = _tags("""
    PatientAddress PatientTelephoneNumbers PatientTelecomInformation OtherPatientIDs OtherPatientIDsSequence
    OtherPatientNames PatientBirthName PatientMotherBirthName PatientBirthTime PatientSize PatientWeight
    EthnicGroup Occupation MilitaryRank BranchOfService MedicalRecordLocator AdditionalPatientHistory
    PatientComments PatientReligiousPreference PregnancyStatus SmokingStatus MedicalAlerts Allergies
    AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence AdmissionID IssuerOfPatientID
    IssuerOfPatientIDQualifiersSequence PatientInsurancePlanCodeSequence ResponsiblePerson ResponsibleOrganization
    CountryOfResidence RegionOfResidence CurrentPatientLocation PatientState PatientInstitutionResidence
    InstitutionName InstitutionAddress InstitutionalDepartmentName InstitutionCodeSequence StationName
    DeviceSerialNumber DeviceUID OperatorsName OperatorIdentificationSequence PerformingPhysicianName
    PerformingPhysicianIdentificationSequence PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
    NameOfPhysiciansReadingStudy PhysiciansReadingStudyIdentificationSequence ReferringPhysicianAddress
    ReferringPhysicianTelephoneNumbers ReferringPhysicianIdentificationSequence RequestingPhysician
    RequestingService ReasonForStudy RequestAttributesSequence ReferencedPatientSequence ReferencedStudySequence
    ReferencedPerformedProcedureStepSequence PerformedProcedureStepID PerformedProcedureStepDescription
    ImageComments StudyComments IdentifyingComments DerivationDescription AcquisitionComments SoftwareVersions
    TimezoneOffsetFromUTC OriginalAttributesSequence ModifiedAttributesSequence DigitalSignaturesSequence
    EncryptedAttributesSequence MACParametersSequence IconImageSequence VerifyingObserverSequence
    ParticipantSequence ActualHumanPerformersSequence InstanceCreatorUID ClinicalTrialSubjectID
    ClinicalTrialSubjectReadingID ClinicalTrialSiteName ClinicalTrialSponsorName DataSetTrailingPadding
""")

# Text kept, each with the check its value must pass (see `_check`). Everything else of a text VR goes.
SCRUBBED = _tags("StudyDescription SeriesDescription ProtocolName SequenceName PulseSequenceName CodeMeaning")
CODE_VALUES = _tags("CodeValue LongCodeValue")
CODING_SCHEMES = _tags("CodingSchemeDesignator")
MANUFACTURERS = _tags("Manufacturer")
NUCLEI = _tags("ImagedNucleus")
KEPT_TEXT = SCRUBBED | CODE_VALUES | CODING_SCHEMES | MANUFACTURERS | NUCLEI
KEPT_BINARY = _tags("PixelData FloatPixelData DoubleFloatPixelData LUTData")

TEXT_VRS = {"AE", "LO", "SH", "LT", "ST", "UT", "UC", "UR"}
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW", "US or SS or OW"}

# Words a sequence or series description (or a code meaning) is made of; any other word is dropped.
ACQUISITION_WORDS = frozenset("""
    BRAIN HEAD NECK SPINE ORBIT ORBITS IAC SELLA PITUITARY ROUTINE PROTOCOL STUDY SERIES MRI MR
    AX AXIAL SAG SAGITTAL COR CORONAL TRA TRANS TRANSVERSE OBL OBLIQUE ISO VOL VOLUME THIN HR HIRES
    FLAIR DWI DTI ADC TRACE TRACEW EXP SWI SWAN GRE SE TSE FSE SPGR FSPGR MPRAGE MPR MIP FFE TFE EPI
    BOLD PERF PERFUSION DSC DCE ASL PCASL STIR PD GD GAD GADO CONTRAST POST PRE C W WO WITH WITHOUT
    AND FS FATSAT FAT SAT WATER IR TIR TOF MRA MRV ANGIO LOCALIZER LOC SCOUT SURVEY CAL CALIBRATION
    RECON REFORMAT MPR CISS FIESTA BRAVO PROPELLER BLADE HASTE TRUFI VIBE DIXON MOCO NAV SSH SS
    SPECTRO MRS SVS CSI DIFFUSION TENSOR FA MAP DELAYED DYNAMIC DYN SUBTRACTION BOLUS SCREENING
    NEURO TUMOR TUMOUR LESION FOLLOW UP FU STANDARD LEFT RIGHT BILAT T1 T2 T1W T2W PDW SWIW
    SKULL CEREBRUM CEREBELLUM BRAINSTEM ENTIRE WHOLE BODY PART OF THE MAGNETIC RESONANCE IMAGING
    ANATOMY REGION SCAN IMAGE IMAGES ORIGINAL PRIMARY SECONDARY DERIVED APPLICATION CONFIDENTIALITY
    BASIC OPTION OPTIONS PROFILE CLEAN DESCRIPTORS RETAIN LONGITUDINAL TEMPORAL INFORMATION MODIFIED
    DATES PATIENT CHARACTERISTICS DEVICE IDENTITY SAFE PRIVATE UIDS
""".split())
# Words a code string (CS) may hold: MR acquisition terms of PS3.3 (image type, sequences, options,
# positions, body parts) besides the acquisition vocabulary above.
CS_WORDS = ACQUISITION_WORDS | frozenset("""
    M P R I NORM DIS2D DIS3D ND MOSAIC OTHER NONE SK MTC SP MP OSP TRSS TOF RM GR EP IR SE PFP PFF FC FC_FREQ_AX_GEMS
    PER RG CG PPG OF FILTERED_GEMS SAT1 SAT2 SAT3 FAST_GEMS EDR_GEMS VB_GEMS IR_GEMS 2D 3D HFS HFP HFDR HFDL
    FFS FFP FFDR FFDL LFP LFS RFP RFS AFDR AFDL PFDR PFDL MR CT OT SR SEG PR KO YES NO MODIFIED REMOVED
    MAGNITUDE PHASE REAL IMAGINARY MIXED DIFFUSION ANGIO T1 T2 FLOW PROTON_DENSITY ORIGINAL PRIMARY SECONDARY
    DERIVED LOCALIZER AXIAL ISO_IMAGE MONOCHROME1 MONOCHROME2 RGB VOLUME SAMPLED DISTORTED ISOTROPIC
    IDENTITY INVERSE LINEAR LINEAR_EXACT SIGMOID US HU UNSPECIFIED F L A B CR DX MG NM PT XA RF ES OP SM XC IO PX
    ISO_IR 6 100 101 109 110 126 127 138 144 148 166 192 ISO_IR_100 ISO_IR_192 GB18030 GBK ISO 2022 IR 87 159 149 13
    58 ISO_2022_IR_6 ISO_2022_IR_100 ISO_2022_IR_87 ISO_2022_IR_13 ISO_2022_IR_149 ISO_2022_IR_58 ISO_2022_IR_159
    ISO_2022_IR_101 ISO_2022_IR_109 ISO_2022_IR_110 ISO_2022_IR_126 ISO_2022_IR_127 ISO_2022_IR_138 ISO_2022_IR_144
    ISO_2022_IR_148 ISO_2022_IR_166 SAMPLE RESEARCH CLINICAL BIPLANE UNKNOWN
""".split())
KNOWN_SCHEMES = frozenset("DCM SRT SCT LN UCUM FMA RADLEX RADLEX_ NCIT ACR MDNS UMLS ISO I10 I9C".split())
KNOWN_MANUFACTURERS = ("SIEMENS", "GE MEDICAL SYSTEMS", "GE HEALTHCARE", "PHILIPS", "TOSHIBA", "CANON",
                       "HITACHI", "FUJIFILM", "UNITED IMAGING", "UIH", "ESAOTE", "BRUKER", "NEUSOFT", "SAMSUNG")
_WORD = re.compile(r"[A-Za-z0-9]+")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9 +\-*/_.()]")
_DIGIT_RUN = re.compile(r"\d+")
_CODE_VALUE = re.compile(r"[A-Za-z0-9.\-:]{1,16}")
_LETTER_RUN = re.compile(r"[A-Za-z]{4,}")
_NUCLEUS = re.compile(r"\d{1,3}[A-Z][a-z]?")

# PS3.16 CID 7050 codes for what was done.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
PATIENT_CHARACTERISTICS_KEPT = ("113108", "Retain Patient Characteristics Option")


@dataclass(frozen=True)
class StudyKey:
    """What makes one study's de-identification consistent within it and unlinkable to any other.

    Made once per submission and never stored: nobody, BrainScan included, can map the new UIDs
    and dates back to the originals.
    """

    salt: str
    day_offset: int
    patient_code: str = ""
    shift_dates: bool = True
    keep_sex_age: bool = False

    @classmethod
    def new(cls, patient_code: str = "") -> "StudyKey":
        return cls(salt=secrets.token_hex(16),
                   day_offset=MIN_SHIFT_DAYS + secrets.randbelow(MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1),
                   patient_code=patient_code, shift_dates=settings.DICOM_DATES == "shift",
                   keep_sex_age=settings.DICOM_KEEP_SEX_AGE)


def deidentify(ds: Dataset, key: StudyKey) -> None:
    """De-identify `ds` in place, file meta information included."""
    ds.remove_private_tags()
    _clean(ds, key, top_level=True)
    ds.PatientName = key.patient_code
    ds.PatientID = key.patient_code
    ds.PatientIdentityRemoved = "YES"
    for keyword in TYPE_2_PATIENT_AND_STUDY:  # present, if empty, in a valid copy (readers like highdicom need it)
        if keyword not in ds:
            setattr(ds, keyword, "")
    methods = [BASIC_PROFILE, CLEAN_DESCRIPTORS]
    if key.shift_dates:
        methods.append(MODIFIED_DATES)
    if key.keep_sex_age:
        methods.append(PATIENT_CHARACTERISTICS_KEPT)
    ds.DeidentificationMethod = [meaning for _, meaning in methods]
    ds.DeidentificationMethodCodeSequence = Sequence([_code(value, meaning) for value, meaning in methods])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if key.shift_dates else "REMOVED"
    ds.preamble = b"\x00" * 128  # a preamble may hold anything (a TIFF header, for one)
    ds.file_meta = _file_meta(ds)


def _clean(ds: Dataset, key: StudyKey, top_level: bool) -> None:
    for element in list(ds):
        action = _action(element, key, top_level)
        if action == "remove":
            del ds[element.tag]
        elif action == "recurse":
            for item in element.value:
                _clean(item, key, top_level=False)
        elif action == "empty":
            element.value = ""
        elif action == "date":
            element.value = _shift_values(element, key)
        elif action == "uid":
            element.value = _remap_values(element, key.salt)
        elif action == "check":
            checked = _apply(element.value, lambda value: _check(element.tag, value))
            values = checked if isinstance(checked, list) else [checked]
            if any(values):
                element.value = [v for v in values if v] if isinstance(checked, list) else checked
            elif element.tag in SCRUBBED or element.tag in CODE_VALUES or element.tag in CODING_SCHEMES:
                element.value = ""  # type 1 in a code item: kept, empty
            else:
                del ds[element.tag]
        elif action == "age":
            element.value = _apply(element.value, cap_age)


def _action(element: DataElement, key: StudyKey, top_level: bool) -> str:
    tag, vr = element.tag, element.VR
    if tag.is_private or (tag.group & 0xFF00) in (0x5000, 0x6000) or tag in REMOVED:
        return "remove"  # private tags, curves and overlays, named attributes
    if tag in PATIENT_CHARACTERISTICS:
        if not key.keep_sex_age:
            return "empty" if vr == "CS" else "remove"
        return "age" if vr == "AS" else "keep"
    if tag in EMPTIED or tag in PATIENT_IDENTITY:
        return "empty"
    if vr == "SQ":
        return "recurse"
    if vr == "PN":
        return "empty"
    if vr in ("DA", "DT"):
        return "date" if key.shift_dates else "empty"
    if vr == "TM":
        return "keep" if key.shift_dates else "empty"
    if vr == "UI":
        return "uid"
    if vr == "AS":
        return "remove"
    if vr in TEXT_VRS:
        return "check" if tag in KEPT_TEXT else "remove"
    if vr == "CS":
        return "check"
    if vr in BINARY_VRS:
        return "keep" if tag in KEPT_BINARY and (top_level or tag.group == 0x0028) else "remove"
    return "keep"  # numbers, code strings, attribute tags: not identifying (Annex E, notes 9 and 10)


def _apply(value, function):
    """`function` on each value of a single- or multi-valued element."""
    if isinstance(value, (list, tuple, MultiValue)):
        return [function(str(item)) for item in value]
    return function(str(value)) if value is not None else value


def _shift_values(element: DataElement, key: StudyKey):
    return _apply(element.value, lambda text: _shift(text, key.day_offset, element.VR == "DT"))


def _shift(text: str, days: int, is_datetime: bool) -> str:
    """The date moved `days` back; the time of day is kept, a UTC offset dropped. '' if unparseable."""
    text = text.strip()
    try:
        moved = date(int(text[0:4]), int(text[4:6]), int(text[6:8])) - timedelta(days=days)
    except (ValueError, IndexError):
        return ""
    rest = re.split(r"[+-]", text[8:], maxsplit=1)[0] if is_datetime else ""
    return moved.strftime("%Y%m%d") + rest


def _remap_values(element: DataElement, salt: str):
    return _apply(element.value, lambda uid: remap_uid(uid, salt))


def cap_age(age: str) -> str:
    """Ages over 89 are rare enough to identify: they are all written as 090Y (as HIPAA's Safe Harbor)."""
    match = re.fullmatch(r"(\d{3})([DWMY])", age.strip())
    if match is None:
        return ""
    return "090Y" if match.group(2) == "Y" and int(match.group(1)) > 89 else age.strip()


def remap_uid(uid: str, salt: str) -> str:
    uid = uid.strip().rstrip("\x00")
    if not uid or uid.startswith(DICOM_STANDARD_ROOT):
        return uid  # SOP classes, transfer syntaxes, code schemes: defined by the standard, not identifying
    return str(generate_uid(entropy_srcs=[uid, salt]))


def _check(tag, value: str) -> str:
    """The value, or what of it may stay, for a kept text attribute; "" when nothing may."""
    value = value.strip()
    if tag in SCRUBBED:
        return scrub_description(value)
    if tag in CODE_VALUES:  # codes are short tokens with digits ("T-A0100", "113100"), not words
        fits = _CODE_VALUE.fullmatch(value) and _DIGIT_RUN.search(value) and not _LETTER_RUN.search(value)
        return value if fits else ""
    if tag in CODING_SCHEMES:
        return value if value.upper() in KNOWN_SCHEMES or re.fullmatch(r"99[A-Z0-9_]{0,14}", value) else ""
    if tag in MANUFACTURERS:
        upper = value.upper()
        return next((name for name in KNOWN_MANUFACTURERS if upper.startswith(name)), "")
    if tag in NUCLEI:
        return value if _NUCLEUS.fullmatch(value) else ""
    return value if all(word in CS_WORDS for word in re.split(r"[ \\]+", value.upper()) if word) else ""


def scrub_description(text: str) -> str:
    """Keep acquisition vocabulary and short technical codes; drop every other word."""
    kept = _WORD.sub(lambda match: match.group() if _is_technical(match.group()) else " ", text)
    kept = _UNSAFE_CHARACTERS.sub(" ", kept)
    return re.sub(r"\s+", " ", kept).strip(" +-*/_.")


def _is_technical(word: str) -> bool:
    if word.upper() in ACQUISITION_WORDS:
        return True
    digits = _DIGIT_RUN.findall(word)
    # Codes such as "tse2d1" or "b1000"; long digit runs may be dates, record or phone numbers.
    return bool(digits) and len(word) <= 10 and max(len(run) for run in digits) <= 4


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _file_meta(ds: Dataset) -> FileMetaDataset:
    """Fresh file meta information: the original's may name the sending station (Source AE Title)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta
