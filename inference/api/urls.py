from django.urls import path

from inference.api import views

app_name = "api"

urlpatterns = [
    path("markets/", views.MarketList.as_view(), name="markets"),
    path("markets/<str:market>/", views.MarketDetail.as_view(), name="market"),
    path("markets/<str:market>/candles/", views.CandleList.as_view(), name="candles"),
    path("markets/<str:market>/predictions/latest/", views.LatestPrediction.as_view(), name="latest-prediction"),
    path("markets/<str:market>/predictions/", views.PredictionList.as_view(), name="predictions"),
    path("markets/<str:market>/metrics/", views.MarketMetrics.as_view(), name="metrics"),
    path("models/", views.ModelList.as_view(), name="models"),
    path("models/<int:pk>/", views.ModelDetail.as_view(), name="model"),
]
