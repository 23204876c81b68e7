from django.urls import path

from web import views

app_name = "web"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("markets/<str:name>/", views.market_detail, name="market"),
    path("markets/<str:name>/model/", views.market_model, name="market-model"),
    path("markets/<str:name>/accuracy/", views.market_accuracy, name="market-accuracy"),
    path("markets/<str:name>/horizons/", views.market_horizons, name="market-horizons"),
    path("models/", views.models, name="models"),
]
