"""Partitions: one dynamic partition per Datanet; reward epochs per Datanet and epoch."""

import dagster as dg

datanet_partitions = dg.DynamicPartitionsDefinition(name="datanets")
# Epoch numbers ("0", "1", ...) are added as epochs close; they pair with every Datanet.
epoch_partitions = dg.DynamicPartitionsDefinition(name="epochs")
datanet_epoch_partitions = dg.MultiPartitionsDefinition(
    {"datanet": datanet_partitions, "epoch": epoch_partitions}
)
