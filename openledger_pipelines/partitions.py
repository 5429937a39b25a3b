"""Partitions: one dynamic partition per Datanet."""

import dagster as dg

datanet_partitions = dg.DynamicPartitionsDefinition(name="datanets")
