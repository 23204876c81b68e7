from django.contrib import admin

from markets.models import BookWindow, Candle, Market, Trade


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "symbol",
        "enabled",
        "interval_s",
        "stream_state",
        "stream_detail",
        "last_trade_at",
        "late_trades",
        "book_depth",
        "book_updated_at",
        "book_checksum_failures",
        "book_resyncs",
        "book_receive_stamped",
    ]
    list_filter = ["exchange", "enabled", "stream_state"]
    list_editable = ["enabled"]
    search_fields = ["exchange", "base", "quote", "symbol"]
    fieldsets = [
        (None, {"fields": ["exchange", "base", "quote", "symbol", "enabled", "interval_s"]}),
        ("Stream", {"fields": ["stream_state", "stream_detail", "stream_updated_at", "last_trade_at"]}),
        ("History", {"fields": ["backfill_cursor"]}),
        (
            "Order book",
            {
                "fields": [
                    "book_depth",
                    "book_updated_at",
                    "book_checksum_failures",
                    "book_resyncs",
                    "book_receive_stamped",
                ],
                "description": "As recorded by the live stream: levels per side held, time of the last book"
                " message of the last stored window, checksum mismatches, fresh snapshots requested and messages"
                " without an exchange time (stamped when received).",
            },
        ),
    ]
    readonly_fields = [
        "stream_state",
        "stream_detail",
        "stream_updated_at",
        "last_trade_at",
        "late_trades",
        "backfill_cursor",
        "book_depth",
        "book_updated_at",
        "book_checksum_failures",
        "book_resyncs",
        "book_receive_stamped",
    ]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by the pipeline only: viewable, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ["ts", "market", "trade_id", "side", "price", "qty"]
    list_filter = ["market", "side"]
    list_select_related = ["market"]
    date_hierarchy = "ts"
    show_full_result_count = False  # counting millions of rows on every page is slow


@admin.register(Candle)
class CandleAdmin(ReadOnlyAdmin):
    list_display = ["start", "market", "interval_s", "open", "high", "low", "close", "volume", "trades", "amended"]
    list_filter = ["market", "interval_s", "final"]
    list_select_related = ["market"]
    date_hierarchy = "start"
    show_full_result_count = False


@admin.register(BookWindow)
class BookWindowAdmin(ReadOnlyAdmin):
    list_display = [
        "start",
        "market",
        "interval_s",
        "bid_price",
        "ask_price",
        "microprice",
        "ofi",
        "spread_tw",
        "imbalance_tw",
        "depth_imbalance",
        "updates",
    ]
    list_filter = ["market", "interval_s"]
    list_select_related = ["market"]
    date_hierarchy = "start"
    show_full_result_count = False
