"""The suspicion model shipped with the package, used until a project calibrates its own.

Fit on the calibration half of pose-gt-dev (see calibration.assign_splits),
pre-filled with the multi-person engine; the other half is the held-out
report. Regenerate with:
    pose-annotator suspicion PROJECT --calibrate --gt GT.json --split cal --export-model model.json
    python -m annotator.review.default_model model.json
"""
import json

MODEL = json.loads(r'''
{
 "format": "pose-annotator-suspicion-model/1",
 "full": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "tta"
  ],
  "mean": [
   0.32524
  ],
  "std": [
   0.34231
  ],
  "coef": [
   1.840365
  ],
  "intercept": -2.358541,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 23,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000172648.jpg",
     "coco_mini/000000181303.jpg",
     "coco_mini/000000183709.jpg",
     "coco_mini/000000214704.jpg",
     "coco_mini/000000463557.jpg",
     "coco_no_person/000000022892.jpg",
     "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
     "mmpose_coco/000000197388.jpg",
     "mmpose_crowdpose/crowdpose_103319.jpg",
     "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
     "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
     "mmpose_mhp/mhp_10084.jpg",
     "mmpose_mpii/mpii_004645041.jpg",
     "mmpose_mpii/mpii_005808361.jpg",
     "mmpose_ochuman/ochuman_000817.jpg",
     "sg_pose_minicoco/000000009483.jpg",
     "sg_pose_minicoco/000000093620.jpg",
     "sg_pose_minicoco/000000122469.jpg",
     "sg_pose_minicoco/000000162415.jpg",
     "sg_pose_minicoco/000000189475.jpg",
     "sg_pose_minicoco/000000568814.jpg"
    ]
   },
   "n_points": 321,
   "fitted_at": "2026-11-29 16:44:31",
   "which": "with TTA"
  }
 },
 "cheap": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "conf"
  ],
  "mean": [
   0.092917
  ],
  "std": [
   0.180135
  ],
  "coef": [
   0.259303
  ],
  "intercept": -1.865624,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 23,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000172648.jpg",
     "coco_mini/000000181303.jpg",
     "coco_mini/000000183709.jpg",
     "coco_mini/000000214704.jpg",
     "coco_mini/000000463557.jpg",
     "coco_no_person/000000022892.jpg",
     "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
     "mmpose_coco/000000197388.jpg",
     "mmpose_crowdpose/crowdpose_103319.jpg",
     "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
     "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
     "mmpose_mhp/mhp_10084.jpg",
     "mmpose_mpii/mpii_004645041.jpg",
     "mmpose_mpii/mpii_005808361.jpg",
     "mmpose_ochuman/ochuman_000817.jpg",
     "sg_pose_minicoco/000000009483.jpg",
     "sg_pose_minicoco/000000093620.jpg",
     "sg_pose_minicoco/000000122469.jpg",
     "sg_pose_minicoco/000000162415.jpg",
     "sg_pose_minicoco/000000189475.jpg",
     "sg_pose_minicoco/000000568814.jpg"
    ]
   },
   "n_points": 321,
   "fitted_at": "2026-11-29 16:44:31",
   "which": "without TTA"
  }
 },
 "stats": {
  "edge_mu": [
   -2.5307,
   -3.7105,
   -3.7052,
   -2.7115,
   -2.5023,
   -3.652,
   -3.6121,
   -2.7033,
   -2.3771,
   -0.4802,
   -0.6315,
   -1.1185,
   -2.1051,
   -2.1221,
   -2.3287,
   -2.7463,
   -0.6409,
   -0.8901,
   -2.0583,
   -2.0083,
   -2.3583,
   -2.8376,
   -0.0021,
   0.0271,
   -1.027,
   -0.335,
   -0.3179,
   -0.4098,
   -0.3691,
   -2.144,
   -2.2186,
   -1.4384,
   -1.2966,
   -1.2596,
   -1.2032
  ],
  "edge_sd": [
   0.2366,
   0.4622,
   0.4774,
   0.4276,
   0.2834,
   0.546,
   0.5054,
   0.3848,
   0.3569,
   0.2491,
   0.2003,
   0.615,
   0.4168,
   0.5472,
   0.5019,
   0.5194,
   0.2121,
   0.3957,
   0.4013,
   0.4385,
   0.4914,
   0.5385,
   0.1008,
   0.1006,
   0.3232,
   0.246,
   0.1891,
   0.2969,
   0.2275,
   0.2997,
   0.332,
   0.6013,
   0.3635,
   0.3396,
   0.2443
  ],
  "sym_sd": [
   0.2994,
   0.8175,
   0.8236,
   0.6997,
   0.2759,
   0.8243,
   0.5241,
   0.5251,
   0.5563,
   0.5219,
   0.1427,
   0.1502,
   0.1868,
   0.379,
   0.3888,
   0.1467
  ],
  "n": 28
 },
 "joint_prior": [
  -1.6443,
  -1.8116,
  -1.8116,
  -1.8116,
  -1.6443,
  -1.6443,
  -1.6443,
  -1.4679,
  -1.175,
  -1.6443,
  -1.6443,
  -1.9792,
  -1.947,
  -2.5256,
  -2.2068,
  -1.4815,
  -1.8071,
  -1.4815,
  -1.8071,
  -1.4815,
  -1.8071,
  -1.4815,
  -1.8071,
  -2.1038,
  -2.0669,
  -2.0286,
  -1.9888,
  -1.6443,
  -1.9041,
  -1.6443,
  -1.9041,
  -1.6443,
  -1.9041
 ],
 "meta": {
  "trained_on": {
   "gt": "annotations.json",
   "split": "cal",
   "images": 23,
   "files": [
    "coco_mini/000000030752.jpg",
    "coco_mini/000000109313.jpg",
    "coco_mini/000000172648.jpg",
    "coco_mini/000000181303.jpg",
    "coco_mini/000000183709.jpg",
    "coco_mini/000000214704.jpg",
    "coco_mini/000000463557.jpg",
    "coco_no_person/000000022892.jpg",
    "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
    "mmpose_coco/000000197388.jpg",
    "mmpose_crowdpose/crowdpose_103319.jpg",
    "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
    "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
    "mmpose_mhp/mhp_10084.jpg",
    "mmpose_mpii/mpii_004645041.jpg",
    "mmpose_mpii/mpii_005808361.jpg",
    "mmpose_ochuman/ochuman_000817.jpg",
    "sg_pose_minicoco/000000009483.jpg",
    "sg_pose_minicoco/000000093620.jpg",
    "sg_pose_minicoco/000000122469.jpg",
    "sg_pose_minicoco/000000162415.jpg",
    "sg_pose_minicoco/000000189475.jpg",
    "sg_pose_minicoco/000000568814.jpg"
   ]
  },
  "n_points": 321,
  "fitted_at": "2026-11-29 16:44:31"
 }
}
''')

if __name__ == "__main__":
    import sys
    from pathlib import Path
    text = Path(__file__).read_text(encoding="utf-8")
    head = text[:text.index("MODEL = json.loads(")]
    tail = text[text.index("if __name__"):]
    body = json.dumps(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")), indent=1)
    Path(__file__).write_text(head + "MODEL = json.loads(r" + "\'\'\'\n" + body + "\n" + "\'\'\')\n\n" + tail,
                              encoding="utf-8")
