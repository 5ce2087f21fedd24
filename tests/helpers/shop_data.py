"""A made-up shop for the own-data tests: a deep path taxonomy, a CSV with pixel ltwh boxes, JPEG and
PNG images of mixed sizes.

It is made from the synthetic generator's scenes (so a model has something to learn): each scene is
resized to one of a few non-square sizes and saved as JPEG or PNG, its boxes converted to pixels of
the new size; products keep their JPEGs, renamed to SKU ids. Three categories survive: tops, pants
and boots (labels under `Shop|...`, matched by `|*`); handbags are relabelled to a dropped path and
sunglasses to a path no category claims.
"""

import json
import os

from PIL import Image

from ctl_keras.data import synthetic

LABELS = {"tops": "Shop|Upper|Tops|Tees", "pants": "Shop|Legs|Pants|Chinos", "shoes": "Shop|Feet|Boots|Ankle",
          "handbags": "Shop|Bags|Totes", "sunglasses": "Shop|Eyes|Sunglasses"}
SPEC = {"name": "myshop", "pairs_format": "csv", "bbox": "pixel_ltwh", "crop_sides": "top_bottom",
        "categories": {"tops": ["Shop|Upper|*"], "pants": ["Shop|Legs|*"], "boots": ["Shop|Feet|*"]},
        "drop": ["Shop|Bags|*"]}
SIZES = [(96, 128), (120, 96), (100, 100)]
COLUMNS = ("scene", "product", "category", "left", "top", "width", "height")


def make_shop(root, *, num_scenes=48, seed=0) -> dict:
    """-> {"spec", "csv", "images_dir", "rows"}: the spec file, the pairs CSV, the image directory."""
    root = os.fspath(root)
    raw = synthetic.generate(os.path.join(root, "generated"), num_scenes=num_scenes, scene_size=96,
                             product_size=64, seed=seed)
    with open(raw["pairs"]) as f:
        pairs = json.load(f)
    with open(os.path.join(os.path.dirname(raw["pairs"]), "styles.json")) as f:
        kinds = {sig: meta["category"] for sig, meta in json.load(f)["products"].items()}
    images = os.path.join(root, "images")
    os.makedirs(images, exist_ok=True)
    scene_ids, product_ids, rows = {}, {}, []
    for pair in pairs:
        if pair["scene"] not in scene_ids:
            i = len(scene_ids)
            scene_ids[pair["scene"]] = f"look-{i:04d}"
            size = SIZES[i % len(SIZES)]
            with Image.open(os.path.join(raw["images_dir"], pair["scene"] + ".jpg")) as img:
                scene = img.convert("RGB").resize(size, Image.BILINEAR)
            suffix = ".png" if i % 2 else ".jpg"
            scene.save(os.path.join(images, scene_ids[pair["scene"]] + suffix))
        if pair["product"] not in product_ids:
            product_ids[pair["product"]] = f"SKU_{len(product_ids):05d}"
            with Image.open(os.path.join(raw["images_dir"], pair["product"] + ".jpg")) as img:
                img.convert("RGB").save(os.path.join(images, product_ids[pair["product"]] + ".jpg"), quality=95)
        width, height = SIZES[list(scene_ids).index(pair["scene"]) % len(SIZES)]
        left, top, right, bottom = pair["bbox"]
        rows.append({"scene": scene_ids[pair["scene"]], "product": product_ids[pair["product"]],
                     "category": LABELS[kinds[pair["product"]]], "left": round(left * width, 2),
                     "top": round(top * height, 2), "width": round((right - left) * width, 2),
                     "height": round((bottom - top) * height, 2)})
    csv_path = os.path.join(root, "shop.csv")
    with open(csv_path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        f.writelines(",".join(str(row[c]) for c in COLUMNS) + "\n" for row in rows)
    spec_path = os.path.join(root, "myshop.json")
    with open(spec_path, "w") as f:
        json.dump(SPEC, f, indent=1)
    return {"spec": spec_path, "csv": csv_path, "images_dir": images, "rows": rows}
