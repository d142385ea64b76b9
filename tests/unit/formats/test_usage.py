from tollgate.formats.usage import Usage


def test_counted_total_is_input_plus_output_whatever_was_reported() -> None:
    assert Usage(input_tokens=3, output_tokens=4).counted_total == 7
    assert Usage(input_tokens=3, output_tokens=4, total_tokens=10).counted_total == 7
    assert Usage(input_tokens=3, total_tokens=10).counted_total is None
    assert Usage(input_tokens=3, output_tokens=4).total_tokens is None  # only as reported


def test_uncached_input_leaves_out_cache_reads_and_writes() -> None:
    assert Usage(input_tokens=100, cached_tokens=60, cache_write_tokens=30).uncached_input_tokens == 10
    assert Usage(input_tokens=10, cached_tokens=60).uncached_input_tokens == 0
    assert Usage(cached_tokens=60).uncached_input_tokens is None


def test_update_takes_a_later_report_field_by_field() -> None:
    usage = Usage(input_tokens=20, cached_tokens=5, finish_reason="stop")
    usage.update(Usage(output_tokens=7, cached_tokens=6, service_tier="flex"))
    assert usage == Usage(input_tokens=20, output_tokens=7, cached_tokens=6, finish_reason="stop", service_tier="flex")


def test_price_context_names_the_tier_as_the_price_table_does() -> None:
    usage = Usage(service_tier="SERVICE_TIER_PRIORITY", speed="fast")
    assert usage.price_context() == (("service_tier", "priority"), ("speed", "fast"))
    assert Usage().price_context() == ()
