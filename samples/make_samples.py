"""Writes samples/training_job_configs.csv, the same rows as .xlsx, and earlier_state.jsonl (an
earlier state of each valid row's config, to seed a sandbox for the plan/apply/rollback walk-through).

Run from the repository root after editing the rows: python samples/make_samples.py
"""

import csv
import json
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).parent
COLUMNS = ["config_name", "config_desc", "worker_server_num", "spec_id", "engine_id", "model_id",
           "app_url", "boot_file_url", "data_url", "dataset_id", "dataset_version_id", "data_source",
           "parameter", "param.learning_rate", "param.batch_size", "train_url", "log_url",
           "user_image_url", "user_command"]


def row(**cells):
    return [cells.get(column, "") for column in COLUMNS]


def params(**values):
    return json.dumps([{"label": label, "value": value} for label, value in values.items()])


ROWS = [
    row(config_name="resnet50-imagenet", config_desc="ResNet-50 on ImageNet, 2 nodes",
        worker_server_num="2", spec_id="1", engine_id="1", app_url="/ml-team-code/resnet50/",
        boot_file_url="/ml-team-code/resnet50/train.py", data_url="/ml-team-data/imagenet/",
        **{"param.learning_rate": "0.1", "param.batch_size": "256"},
        train_url="/ml-team-output/resnet50/", log_url="/ml-team-logs/resnet50/"),
    row(config_name="bert-base-finetune", config_desc="BERT fine-tuning, built-in algorithm",
        worker_server_num="1", spec_id="2", model_id="18",
        dataset_id="38277e62-9e59-48f4-8d89-c8cf41622c24",
        dataset_version_id="2ff0d6ba-c480-45ae-be41-09a8369bfc90",
        parameter=params(epochs="3", max_seq_length="128"), train_url="/ml-team-output/bert/"),
    row(config_name="yolov5-coco", config_desc="YOLOv5 on COCO from an OBS data source",
        worker_server_num="4", spec_id="3", engine_id="4", app_url="/ml-team-code/yolov5/",
        boot_file_url="/ml-team-code/yolov5/tools/train.py",
        data_source=json.dumps([{"type": "obs", "data_url": "/ml-team-data/coco2017/"}]),
        parameter=params(epochs="300", img_size="640"), train_url="/ml-team-output/yolov5/",
        log_url="/ml-team-logs/yolov5/"),
    row(config_name="unet-medseg", config_desc="U-Net segmentation on a labelled dataset",
        worker_server_num="1", spec_id="1", engine_id="1", app_url="/ml-team-code/unet/",
        boot_file_url="/ml-team-code/unet/main.py",
        data_source=json.dumps([{"type": "dataset", "dataset_id": "a1b2c3d4-0000-4a5b-9c8d-111122223333",
                                 "dataset_version": "v7Xb29QdA1"}]),
        **{"param.learning_rate": "0.0003"}, train_url="/ml-team-output/unet/"),
    row(config_name="llama-sft-custom", config_desc="Custom image with its own boot command",
        worker_server_num="8", spec_id="5", app_url="/ml-team-code/llm-sft/",
        boot_file_url="/ml-team-code/llm-sft/run.py", data_url="/ml-team-data/sft-corpus/",
        user_image_url="swr.cn-north-4.myhuaweicloud.com/ml-team/llm-train:2.1.0",
        user_command="bash /home/work/run_train.sh python /home/work/user-job-dir/llm-sft/run.py",
        parameter=params(NCCL_DEBUG="INFO"), train_url="/ml-team-output/llm-sft/",
        log_url="/ml-team-logs/llm-sft/"),
    row(config_name="xgboost-churn", config_desc="Built-in XGBoost, churn model",
        worker_server_num="1", spec_id="1", model_id="42", data_url="/ml-team-data/churn/2026-11/",
        parameter=params(max_depth="6", eta="0.3"), train_url="/ml-team-output/churn/"),
    row(config_name="gpt2-small-pretrain", config_desc="GPT-2 small pre-training, 4 nodes",
        worker_server_num="4", spec_id="4", engine_id="7", app_url="/ml-team-code/gpt2/",
        boot_file_url="/ml-team-code/gpt2/pretrain.py", data_url="/ml-team-data/openwebtext/",
        **{"param.learning_rate": "6e-4", "param.batch_size": "512"},
        train_url="/ml-team-output/gpt2/", log_url="/ml-team-logs/gpt2/"),
    row(config_name="mobilenet-v3-edge", config_desc="MobileNetV3 for edge devices",
        worker_server_num="1", spec_id="2", engine_id="1", app_url="/ml-team-code/mobilenet/",
        boot_file_url="/ml-team-code/mobilenet/train.py", data_url="/ml-team-data/edge-images/",
        **{"param.batch_size": "064"}, train_url="/ml-team-output/mobilenet/"),
    row(config_name="vit-b16-cifar100", config_desc="ViT-B/16 on CIFAR-100, dataset version pinned",
        worker_server_num="2", spec_id="3", engine_id="4", app_url="/ml-team-code/vit/",
        boot_file_url="/ml-team-code/vit/train_vit.py",
        dataset_id="5e0a7f3c-1d2b-4c6e-8f9a-0b1c2d3e4f50", dataset_version_id="9a8b7c6d5e4f",
        **{"param.learning_rate": "0.001"}, train_url="/ml-team-output/vit/"),
    row(config_name="wide-deep-ctr", config_desc="Built-in Wide&Deep, click-through rate",
        worker_server_num="2", spec_id="2", model_id="57", data_url="/ml-team-data/ctr/daily/",
        parameter=params(embedding_dim="16"), train_url="/ml-team-output/ctr/",
        log_url="/ml-team-logs/ctr/"),
    row(config_name="lstm-forecast", config_desc="LSTM demand forecast; NA stays as typed",
        worker_server_num="1", spec_id="1", engine_id="2", app_url="/ml-team-code/forecast/",
        boot_file_url="/ml-team-code/forecast/lstm.py", data_url="/ml-team-data/demand/",
        parameter=params(region="NA", horizon="28"), train_url="/ml-team-output/forecast/"),
    row(config_name="whisper-asr-zh", config_desc="Whisper fine-tuning on Mandarin speech",
        worker_server_num="2", spec_id="4", engine_id="7", app_url="/ml-team-code/whisper/",
        boot_file_url="/ml-team-code/whisper/finetune.py",
        data_source=json.dumps([{"type": "obs", "data_url": "/ml-team-data/aishell/"},
                                {"type": "obs", "data_url": "/ml-team-data/wenetspeech-subset/"}]),
        **{"param.learning_rate": "1e-5", "param.batch_size": "32"},
        train_url="/ml-team-output/whisper/"),
    row(config_name="efficientnet-b0-broken", config_desc="INVALID: boot_file_url is outside app_url",
        worker_server_num="1", spec_id="1", engine_id="1", app_url="/ml-team-code/efficientnet/",
        boot_file_url="/ml-team-code/other/train.py", data_url="/ml-team-data/imagenet/"),
    row(config_name="detr-missing-spec", config_desc="INVALID: no spec_id, and 0 workers",
        worker_server_num="0", engine_id="1", app_url="/ml-team-code/detr/",
        boot_file_url="/ml-team-code/detr/main.py", data_url="/ml-team-data/coco2017/"),
    row(config_name="densenet-two-sources", config_desc="INVALID: data_url and a dataset at once; "
        "worker_server_num is not an integer", worker_server_num="2.5", spec_id="1", model_id="18",
        data_url="/ml-team-data/imagenet/", dataset_id="38277e62-9e59-48f4-8d89-c8cf41622c24",
        dataset_version_id="2ff0d6ba-c480-45ae-be41-09a8369bfc90"),
]


def main() -> None:
    with (HERE / "training_job_configs.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(ROWS)
    workbook = xlsxwriter.Workbook(str(HERE / "training_job_configs.xlsx"),
                                   {"strings_to_numbers": False, "strings_to_formulas": False,
                                    "strings_to_urls": False})
    sheet = workbook.add_worksheet("configs")
    sheet.write_row(0, 0, COLUMNS)
    for number, values in enumerate(ROWS, start=1):
        sheet.write_row(number, 0, values)
    workbook.close()
    from batchcfg.checked import check
    from batchcfg.manifest import open_manifest
    from batchcfg.merge import Patch
    from batchcfg.model import Job
    from batchcfg.sandbox import earlier_state

    with (HERE / "earlier_state.jsonl").open("w", encoding="utf-8") as handle, \
            check(open_manifest(HERE / "training_job_configs.csv"), "") as checked:
        for item in checked.items():
            if isinstance(item, Job):
                earlier = earlier_state(Patch.decode(item.body), item.row)
                handle.write(json.dumps({"config_name": item.config_name, **earlier}) + "\n")


if __name__ == "__main__":
    main()
